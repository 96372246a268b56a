"""The base class of the wizard's pages: completeness through a hidden mandatory field.

A page says whether the person may go on by overriding :meth:`Page.complete` and calling
:meth:`Page.refresh` whenever the answer may have changed. The page does not override
``QWizardPage.isComplete``: with PySide6 6.12 (Python 3.11) every call of a Python
``isComplete`` that returns ``True`` releases one reference to ``True`` too many, and after a
few hundred calls the interpreter aborts ("bool_dealloc"). Instead the answer is written into
a hidden line edit registered as a mandatory field, which Qt's own ``isComplete`` checks.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLineEdit, QWizardPage


class Page(QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self._complete_flag = QLineEdit(self)
        self._complete_flag.hide()
        self.registerField(f"complete-{id(self)}*", self._complete_flag)
        self._shown = False  # the field's initial (empty) value is taken when the page is added

    def complete(self) -> bool:
        """Whether the page is filled in well enough to go on (override)."""
        return True

    def refresh(self) -> None:
        """Re-evaluate :meth:`complete` (Qt then enables or disables Next)."""
        if self._shown:
            self._complete_flag.setText("1" if self.complete() else "")

    def initializePage(self) -> None:
        self._shown = True
        self.refresh()
