"""The first-run setup wizard.

Pages, in order: welcome (new backup, or connect an existing one) → where (large choices with
icons) → the provider's form (fields with help on where to find keys; "Sign in" for Google
Drive, OneDrive and Dropbox) → test connection (the storage probe's steps shown live; a failed
test keeps the wizard on the page) → encryption password (a generated passphrase offered,
strength in words) → recovery kit (a PDF) → what to back up (suggested folders, exclusions) →
when (presets) → summary → first backup with progress.

The pages share one :class:`~safekeep.gui.wizard.draft.SetupDraft`; only the last page calls
the engine to change anything (add the destination, save the plan, start the run), always
through the background runner.
"""

from safekeep.gui.wizard.wizard import PageId, SetupWizard

__all__ = ["PageId", "SetupWizard"]
