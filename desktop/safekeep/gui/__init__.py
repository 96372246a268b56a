"""The desktop app: the first-run wizard, the main window and the tray icon (PySide6).

This is the only package that imports Qt. It is one client of the engine
(:class:`safekeep.engine.service.Service`) and never does backup work itself.

Concepts:

* :mod:`~safekeep.gui.background` — every engine call (disk, network, keyring) runs on a thread
  pool; results, errors and streamed progress come back to the GUI thread through Qt signals.
  No ``processEvents()``, no widget access off the GUI thread.
* :mod:`~safekeep.gui.engine` — the narrow protocol of engine calls the GUI makes, and
  :func:`~safekeep.gui.engine.open_engine` which opens the real service.
* :mod:`~safekeep.gui.wizard` — the first-run setup: where, test connection, password and
  recovery kit, what, when, summary, first backup.
* :mod:`~safekeep.gui.tray`, :mod:`~safekeep.gui.main_window` — the tray icon and the dashboard.
* :mod:`~safekeep.gui.icons` — every icon is drawn with QPainter (no copied logos); state icons
  differ in shape, not only in colour.
* :mod:`~safekeep.gui.app` — ``main(argv)``: the application, a single instance per user.

Every text a person reads goes through ``tr()`` so the app can be translated.
"""
