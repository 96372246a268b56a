"""A chart of a plan's backed-up size and number of files over time (drawn with QPainter).

:func:`points` turns the run history into one point per finished backup: its end time, the size
of the backed-up files and their number (the largest over the plan's destinations, which hold
the same files). :class:`HistoryChart` draws size as a solid line with round markers against
the left axis, and files as a dashed line with square markers against the right axis, so the two
differ in more than colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from safekeep.gui import texts
from safekeep.state.model import Outcome, Run

SIZE_COLOR = "#1f5fa8"
FILES_COLOR = "#8a4b00"


@dataclass(frozen=True)
class Point:
    time: float
    bytes: int
    files: int


def points(runs: Sequence[Run], plan_id: str) -> list[Point]:
    out = []
    for run in runs:
        if run.plan_id != plan_id or run.kind != "backup" or run.finished is None:
            continue
        if run.outcome not in (Outcome.SUCCESS, Outcome.WARNING) or not run.results:
            continue
        out.append(Point(run.finished, max(r.bytes for r in run.results), max(r.files for r in run.results)))
    return sorted(out, key=lambda p: p.time)


class HistoryChart(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.points: list[Point] = []
        self.title = ""
        self.setMinimumHeight(180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setAccessibleName(self.tr("Size and files over time"))

    def sizeHint(self) -> QSize:
        return QSize(600, 220)

    def set_points(self, pts: Sequence[Point], title: str = "") -> None:
        self.points = list(pts)
        self.title = title
        if self.points:
            last = self.points[-1]
            self.setAccessibleDescription(
                self.tr("{n} backups; the latest: {size}, {files} files").format(
                    n=len(self.points), size=texts.size(last.bytes), files=last.files
                )
            )
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        p.fillRect(self.rect(), pal.base())
        fm = p.fontMetrics()
        line = fm.height()
        text_pen = QPen(pal.text().color())
        p.setPen(text_pen)
        p.drawText(QRectF(8, 4, self.width() - 16, line), Qt.AlignmentFlag.AlignLeft, self.title)
        self._legend(p, line)
        left, right = 8 + fm.horizontalAdvance("000.0 MB") + 6, 8 + fm.horizontalAdvance("000000") + 6
        area = QRectF(left, 8 + line * 2, self.width() - left - right, self.height() - 16 - line * 3.2)
        p.setPen(QPen(QColor("#9a9a9a"), 1))
        p.drawRect(area)
        if not self.points:
            p.setPen(text_pen)
            p.drawText(
                area, Qt.AlignmentFlag.AlignCenter, self.tr("The chart starts after the first backup.")
            )
            p.end()
            return
        t0, t1 = self.points[0].time, self.points[-1].time
        span = (t1 - t0) or 1.0
        max_bytes = max(pt.bytes for pt in self.points) or 1
        max_files = max(pt.files for pt in self.points) or 1

        def x(t: float) -> float:
            return area.left() + (
                area.width() * (t - t0) / span if len(self.points) > 1 else area.width() / 2
            )

        def y(v: float, top: float) -> float:
            return area.bottom() - area.height() * v / (top * 1.1)

        p.setPen(text_pen)
        for frac in (0.0, 0.5, 1.0):
            yy = area.bottom() - area.height() * frac / 1.1
            p.drawText(
                QRectF(0, yy - line / 2, left - 4, line),
                Qt.AlignmentFlag.AlignRight,
                texts.size(int(max_bytes * frac)),
            )
            p.drawText(
                QRectF(area.right() + 4, yy - line / 2, right, line),
                Qt.AlignmentFlag.AlignLeft,
                str(int(max_files * frac)),
            )
        for t, align in ((t0, Qt.AlignmentFlag.AlignLeft), (t1, Qt.AlignmentFlag.AlignRight)):
            label = datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")
            p.drawText(QRectF(area.left(), area.bottom() + 2, area.width(), line), align, label)
        size_pts = [QPointF(x(pt.time), y(pt.bytes, max_bytes)) for pt in self.points]
        file_pts = [QPointF(x(pt.time), y(pt.files, max_files)) for pt in self.points]
        solid = QPen(QColor(SIZE_COLOR), 2)
        p.setPen(solid)
        p.drawPolyline(size_pts)
        p.setBrush(QColor(SIZE_COLOR))
        for pt in size_pts:
            p.drawEllipse(pt, 3.5, 3.5)
        dashed = QPen(QColor(FILES_COLOR), 2, Qt.PenStyle.DashLine)
        p.setPen(dashed)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawPolyline(file_pts)
        p.setPen(QPen(QColor(FILES_COLOR), 1.5))
        for pt in file_pts:
            p.drawRect(QRectF(pt.x() - 3, pt.y() - 3, 6, 6))
        p.end()

    def _legend(self, p: QPainter, line: int) -> None:
        fm = p.fontMetrics()
        items = [
            (self.tr("size (left)"), QPen(QColor(SIZE_COLOR), 2), True),
            (self.tr("files (right)"), QPen(QColor(FILES_COLOR), 2, Qt.PenStyle.DashLine), False),
        ]
        x = self.width() - 8.0
        y = 4 + line / 2
        for text, pen, round_marker in reversed(items):
            w = fm.horizontalAdvance(text)
            x -= w
            p.setPen(QPen(self.palette().text().color()))
            p.drawText(QRectF(x, 4, w, line), Qt.AlignmentFlag.AlignLeft, text)
            x -= 34
            p.setPen(pen)
            p.drawLine(QPointF(x, y), QPointF(x + 28, y))
            if round_marker:
                p.drawEllipse(QPointF(x + 14, y), 3, 3)
            else:
                p.drawRect(QRectF(x + 11, y - 3, 6, 6))
            x -= 16
