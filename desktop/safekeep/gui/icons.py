"""Every icon the app shows, drawn with QPainter (no image files, no copied logos).

* :func:`app_icon` — a shield with a check mark.
* :func:`state_icon` — the tray and dashboard states. Each state has its own *shape* as well as
  its colour (a circle with a tick, circling arrows, a triangle with "!", an octagon with "×",
  a circle with pause bars), so no one needs to tell colours apart.
* :func:`provider_icon` — the storage choices in the wizard: generic pictures (a folder, a
  bucket, a server, a globe) and, for named services, a cloud with a short monogram.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPainterPath, QPen, QPixmap, QPolygonF

Painter = Callable[[QPainter, float], None]
"""Draws in a square of the given side, origin at the top left."""


class State(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    WARNING = "warning"
    ERROR = "error"
    PAUSED = "paused"


_SIZES = (16, 22, 24, 32, 48, 64, 128)


def _icon(paint: Painter, sizes: tuple[int, ...] = _SIZES) -> QIcon:
    icon = QIcon()
    for size in sizes:
        icon.addPixmap(pixmap(paint, size))
    return icon


def pixmap(paint: Painter, size: int) -> QPixmap:
    pm = QPixmap(size, size)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    paint(p, float(size))
    p.end()
    return pm


def _pen(color: str, width: float) -> QPen:
    pen = QPen(QColor(color), width)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    return pen


# -- the app ------------------------------------------------------------------------------------


def _paint_shield(p: QPainter, s: float) -> None:
    path = QPainterPath()
    path.moveTo(s * 0.5, s * 0.06)
    path.lineTo(s * 0.88, s * 0.2)
    path.cubicTo(s * 0.88, s * 0.6, s * 0.72, s * 0.82, s * 0.5, s * 0.95)
    path.cubicTo(s * 0.28, s * 0.82, s * 0.12, s * 0.6, s * 0.12, s * 0.2)
    path.closeSubpath()
    p.setPen(_pen("#1d3f72", max(1.0, s * 0.04)))
    p.setBrush(QColor("#2f6fba"))
    p.drawPath(path)
    p.setPen(_pen("#ffffff", max(1.5, s * 0.09)))
    p.drawPolyline(
        QPolygonF([QPointF(s * 0.32, s * 0.5), QPointF(s * 0.45, s * 0.63), QPointF(s * 0.7, s * 0.36)])
    )


def app_icon() -> QIcon:
    return _icon(_paint_shield)


# -- states -------------------------------------------------------------------------------------

STATE_COLOURS = {
    State.IDLE: "#2e7d32",
    State.RUNNING: "#1565c0",
    State.WARNING: "#b26a00",
    State.ERROR: "#c62828",
    State.PAUSED: "#616161",
}


def _paint_state(state: State) -> Painter:
    colour = STATE_COLOURS[state]

    def paint(p: QPainter, s: float) -> None:
        white = _pen("#ffffff", max(1.5, s * 0.11))
        m = s * 0.06
        if state is State.WARNING:
            p.setPen(_pen("#5f3900", max(1.0, s * 0.04)))
            p.setBrush(QColor(colour))
            p.drawPolygon(
                QPolygonF([QPointF(s / 2, m), QPointF(s - m, s - m * 1.5), QPointF(m, s - m * 1.5)])
            )
            p.setPen(white)
            p.drawLine(QPointF(s / 2, s * 0.36), QPointF(s / 2, s * 0.62))
            p.drawPoint(QPointF(s / 2, s * 0.78))
            return
        if state is State.ERROR:
            pts = [
                QPointF(
                    s / 2 + (s / 2 - m) * math.cos(math.pi / 8 + i * math.pi / 4),
                    s / 2 + (s / 2 - m) * math.sin(math.pi / 8 + i * math.pi / 4),
                )
                for i in range(8)
            ]
            p.setPen(_pen("#6d0f0f", max(1.0, s * 0.04)))
            p.setBrush(QColor(colour))
            p.drawPolygon(QPolygonF(pts))
            p.setPen(white)
            a, b = s * 0.33, s * 0.67
            p.drawLine(QPointF(a, a), QPointF(b, b))
            p.drawLine(QPointF(a, b), QPointF(b, a))
            return
        p.setPen(_pen("#202020", max(1.0, s * 0.03)))
        p.setBrush(QColor(colour))
        p.drawEllipse(QRectF(m, m, s - 2 * m, s - 2 * m))
        p.setPen(white)
        p.setBrush(Qt.BrushStyle.NoBrush)
        if state is State.IDLE:
            p.drawPolyline(
                QPolygonF(
                    [QPointF(s * 0.28, s * 0.52), QPointF(s * 0.44, s * 0.68), QPointF(s * 0.72, s * 0.36)]
                )
            )
        elif state is State.RUNNING:
            r = QRectF(s * 0.28, s * 0.28, s * 0.44, s * 0.44)
            p.drawArc(r, 30 * 16, 120 * 16)
            p.drawArc(r, 210 * 16, 120 * 16)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor("#ffffff"))
            h = s * 0.12
            # arrow heads at the arcs' ends (150° and 330°)
            for ang, sign in ((150.0, 1.0), (330.0, -1.0)):
                cx = s / 2 + s * 0.22 * math.cos(math.radians(ang))
                cy = s / 2 - s * 0.22 * math.sin(math.radians(ang))
                p.drawPolygon(
                    QPolygonF(
                        [
                            QPointF(cx - h, cy - sign * h * 0.2),
                            QPointF(cx + h, cy - sign * h * 0.2),
                            QPointF(cx, cy + sign * h),
                        ]
                    )
                )
        elif state is State.PAUSED:
            p.drawLine(QPointF(s * 0.4, s * 0.32), QPointF(s * 0.4, s * 0.68))
            p.drawLine(QPointF(s * 0.6, s * 0.32), QPointF(s * 0.6, s * 0.68))

    return paint


def state_icon(state: State) -> QIcon:
    return _icon(_paint_state(state))


def state_pixmap(state: State, size: int) -> QPixmap:
    return pixmap(_paint_state(state), size)


def tray_icon(state: State) -> QIcon:
    """The app's shield with the state's badge in the lower right corner."""

    def paint(p: QPainter, s: float) -> None:
        _paint_shield(p, s * 0.86)
        if state is not State.IDLE:
            p.save()
            p.translate(s * 0.44, s * 0.44)
            _paint_state(state)(p, s * 0.56)
            p.restore()

    return _icon(paint)


# -- storage providers --------------------------------------------------------------------------


def _paint_folder(p: QPainter, s: float) -> None:
    p.setPen(_pen("#8a6100", s * 0.03))
    p.setBrush(QColor("#f2b632"))
    path = QPainterPath()
    path.moveTo(s * 0.08, s * 0.22)
    path.lineTo(s * 0.38, s * 0.22)
    path.lineTo(s * 0.46, s * 0.3)
    path.lineTo(s * 0.92, s * 0.3)
    path.lineTo(s * 0.92, s * 0.8)
    path.lineTo(s * 0.08, s * 0.8)
    path.closeSubpath()
    p.drawPath(path)
    p.setBrush(QColor("#ffd061"))
    p.drawRect(QRectF(s * 0.08, s * 0.38, s * 0.84, s * 0.42))
    # a small drive below the folder: "this computer or a disk"
    p.setBrush(QColor("#5f6b7a"))
    p.setPen(_pen("#2b323b", s * 0.02))
    p.drawRoundedRect(QRectF(s * 0.56, s * 0.66, s * 0.38, s * 0.22), s * 0.04, s * 0.04)
    p.setPen(_pen("#9cf29c", s * 0.05))
    p.drawPoint(QPointF(s * 0.86, s * 0.77))


def _paint_bucket(p: QPainter, s: float) -> None:
    p.setPen(_pen("#7a2e0e", s * 0.03))
    p.setBrush(QColor("#e8743b"))
    p.drawPolygon(
        QPolygonF(
            [
                QPointF(s * 0.14, s * 0.24),
                QPointF(s * 0.86, s * 0.24),
                QPointF(s * 0.74, s * 0.88),
                QPointF(s * 0.26, s * 0.88),
            ]
        )
    )
    p.setBrush(QColor("#f6a77e"))
    p.drawEllipse(QRectF(s * 0.14, s * 0.16, s * 0.72, s * 0.16))


def _paint_server(p: QPainter, s: float) -> None:
    p.setPen(_pen("#1f2a36", s * 0.03))
    p.setBrush(QColor("#37474f"))
    p.drawRoundedRect(QRectF(s * 0.12, s * 0.14, s * 0.76, s * 0.72), s * 0.06, s * 0.06)
    p.setPen(_pen("#7cf29c", s * 0.07))
    p.drawPolyline(
        QPolygonF([QPointF(s * 0.26, s * 0.36), QPointF(s * 0.4, s * 0.48), QPointF(s * 0.26, s * 0.6)])
    )
    p.drawLine(QPointF(s * 0.48, s * 0.64), QPointF(s * 0.7, s * 0.64))


def _paint_globe(p: QPainter, s: float) -> None:
    r = QRectF(s * 0.1, s * 0.1, s * 0.8, s * 0.8)
    p.setPen(_pen("#0b4f6c", s * 0.04))
    p.setBrush(QColor("#4fb0d9"))
    p.drawEllipse(r)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawEllipse(QRectF(s * 0.32, s * 0.1, s * 0.36, s * 0.8))
    p.drawLine(QPointF(s * 0.1, s * 0.5), QPointF(s * 0.9, s * 0.5))
    p.drawLine(QPointF(s * 0.5, s * 0.1), QPointF(s * 0.5, s * 0.9))


def _paint_cloud(fill: str, text: str) -> Painter:
    def paint(p: QPainter, s: float) -> None:
        c = QColor(fill)
        p.setPen(_pen(c.darker(160).name(), s * 0.03))
        p.setBrush(c)
        path = QPainterPath()
        path.setFillRule(Qt.FillRule.WindingFill)
        path.addEllipse(QRectF(s * 0.06, s * 0.4, s * 0.36, s * 0.36))
        path.addEllipse(QRectF(s * 0.24, s * 0.2, s * 0.46, s * 0.46))
        path.addEllipse(QRectF(s * 0.56, s * 0.36, s * 0.38, s * 0.38))
        path.addRect(QRectF(s * 0.24, s * 0.5, s * 0.52, s * 0.26))
        p.drawPath(path.simplified())
        font = QFont("DejaVu Sans")
        font.setBold(True)
        font.setPixelSize(max(6, int(s * (0.2 if len(text) < 3 else 0.16))))
        p.setFont(font)
        p.setPen(QColor("#ffffff"))
        p.drawText(QRectF(0, s * 0.36, s, s * 0.4), Qt.AlignmentFlag.AlignCenter, text)

    return paint


PROVIDER_PAINTERS: dict[str, Painter] = {
    "local": _paint_folder,
    "s3": _paint_bucket,
    "sftp": _paint_server,
    "webdav": _paint_globe,
    "azure": _paint_cloud("#2b6cb0", "Az"),
    "gs": _paint_cloud("#2f855a", "GCS"),
    "rclone": _paint_cloud("#4a5568", "rc"),
    "gdrive": _paint_cloud("#1e7e34", "GD"),
    "onedrive": _paint_cloud("#1565c0", "OD"),
    "dropbox": _paint_cloud("#2c5282", "Db"),
}


def provider_icon(key: str) -> QIcon:
    return _icon(PROVIDER_PAINTERS.get(key, _paint_globe))
