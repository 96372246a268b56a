"""Click through the setup wizard with pytest-qt, against the real engine and real storage.

Each path ends with a completed first backup made by the engine's worker process: a folder
(checked with restic), moto's S3 and OpenSSH's SFTP (checked by listing the snapshots).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard
from pytestqt.qtbot import QtBot

from safekeep.engine.service import Service
from safekeep.gui.background import Background
from safekeep.gui.wizard import PageId, SetupWizard
from safekeep.gui.wizard.draft import SchedulePreset
from safekeep.gui.wizard.forms import LocalForm, S3Form, SftpForm
from safekeep.state.model import Outcome, Retention, Run
from tests.servers.sshd import SshServer

WAIT_MS = 60_000


def make_wizard(qtbot: QtBot, engine: Service, home: Path) -> SetupWizard:
    background = Background()
    wizard = SetupWizard(engine, background, home=home)
    qtbot.addWidget(wizard)
    wizard.show()
    qtbot.waitExposed(wizard)
    return wizard


def shot(wizard: QWizard, folder: Path, name: str) -> None:
    assert wizard.grab().save(str(folder / f"{name}.png"))


def click_next(qtbot: QtBot, wizard: QWizard) -> None:
    button = wizard.button(QWizard.WizardButton.NextButton)
    if not button.isVisible():
        button = wizard.button(QWizard.WizardButton.CommitButton)
    assert button.isEnabled(), f"Next is disabled on page {PageId(wizard.currentId()).name}"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def go_to_provider(qtbot: QtBot, wizard: SetupWizard, key: str, screenshots: Path | None = None) -> None:
    if screenshots:
        shot(wizard, screenshots, "wizard-01-welcome")
    click_next(qtbot, wizard)
    assert wizard.currentId() == PageId.WHERE
    qtbot.mouseClick(wizard.where.buttons[key], Qt.MouseButton.LeftButton)
    if screenshots:
        shot(wizard, screenshots, "wizard-02-where")
    click_next(qtbot, wizard)
    assert wizard.currentId() == PageId.PROVIDER


def wait_for_probe(qtbot: QtBot, wizard: SetupWizard) -> None:
    qtbot.waitUntil(lambda: wizard.test.result is not None, timeout=WAIT_MS)


def test_local_folder_to_first_backup(
    qtbot: QtBot, engine: Service, home: Path, tmp_path: Path, screenshots: Path, restic_bin: str
) -> None:
    wizard = make_wizard(qtbot, engine, home)
    go_to_provider(qtbot, wizard, "local", screenshots)
    form = wizard.provider.form()
    assert isinstance(form, LocalForm)
    next_button = wizard.button(QWizard.WizardButton.NextButton)
    assert not next_button.isEnabled()  # no folder yet
    assert "folder" in wizard.provider.problem.text()
    (tmp_path / "usb").mkdir()  # the disk is there; its Backups folder is made by the wizard
    target = tmp_path / "usb" / "Backups"
    qtbot.keyClicks(form.folder, str(target))
    assert next_button.isEnabled()
    shot(wizard, screenshots, "wizard-03-provider-local")
    click_next(qtbot, wizard)

    assert wizard.currentId() == PageId.TEST
    wait_for_probe(qtbot, wizard)
    assert wizard.test.result is not None and wizard.test.result.ok
    assert "✔" in wizard.test.summary.text()
    names = [
        wizard.test.steps.item(i).data(Qt.ItemDataRole.UserRole) for i in range(wizard.test.steps.count())
    ]
    assert names[:3] == ["connect", "write", "read"]
    shot(wizard, screenshots, "wizard-04-test")
    click_next(qtbot, wizard)

    assert wizard.currentId() == PageId.PASSWORD
    assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()
    qtbot.keyClicks(wizard.password.password, "short")
    assert "Weak" in wizard.password.strength.text()
    assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()
    qtbot.mouseClick(wizard.password.suggest, Qt.MouseButton.LeftButton)
    assert "Very strong" in wizard.password.strength.text()
    phrase = wizard.password.password.text()
    assert phrase.count("-") == 4
    shot(wizard, screenshots, "wizard-05-password")
    click_next(qtbot, wizard)

    assert wizard.currentId() == PageId.KIT
    assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()
    kit = tmp_path / "kit.pdf"
    wizard.kit.save_to(str(kit))
    assert kit.read_bytes().startswith(b"%PDF")
    assert "Saved" in wizard.kit.saved.text()
    shot(wizard, screenshots, "wizard-06-kit")
    click_next(qtbot, wizard)

    assert wizard.currentId() == PageId.SOURCES
    assert wizard.sources.chosen() == [str(home / "Documents"), str(home / "Desktop")]
    assert "*.tmp" in wizard.sources.excludes.toPlainText()
    wizard.sources.excludes.appendPlainText("*.bak")
    shot(wizard, screenshots, "wizard-07-sources")
    click_next(qtbot, wizard)

    assert wizard.currentId() == PageId.SCHEDULE
    wizard.schedule.options[SchedulePreset.NIGHTLY].click()
    keep = wizard.schedule.retention
    assert keep.choice.currentData() == "recommended" and not keep.custom.isVisible()
    assert "24 hourly, 7 daily" in keep.summary.text()
    shot(wizard, screenshots, "wizard-08-schedule")
    keep.choice.setCurrentIndex(keep.choice.findData("custom"))
    assert keep.custom.isVisible() and keep.counts["keep_daily"].value() == 7  # starts from the advice
    keep.counts["keep_daily"].setValue(14)
    keep.counts["keep_hourly"].setValue(0)
    assert "the last 14 daily, 5 weekly" in keep.summary.text()
    shot(wizard, screenshots, "wizard-08-schedule-custom-retention")
    click_next(qtbot, wizard)

    assert wizard.currentId() == PageId.SUMMARY
    assert str(target) in wizard.summary.details.text()
    assert "Every night at 22:00" in wizard.summary.details.text()
    assert "the last 14 daily, 5 weekly, 12 monthly and 5 yearly backups" in wizard.summary.details.text()
    wizard.summary.name.setText("Office files")
    shot(wizard, screenshots, "wizard-09-summary")
    click_next(qtbot, wizard)

    assert wizard.currentId() == PageId.FIRST_BACKUP
    qtbot.waitUntil(lambda: wizard.first_backup.run is not None, timeout=WAIT_MS)
    shot(wizard, screenshots, "wizard-10-first-backup")
    run = wizard.first_backup.run
    assert run is not None and run.outcome is Outcome.SUCCESS
    assert "complete" in wizard.first_backup.stage.text()
    assert (target / "config").is_file()  # a real repository was created
    (plan,) = engine.plans()
    assert plan.name == "Office files"
    assert plan.sources == (str(home / "Documents"), str(home / "Desktop"))
    assert "*.bak" in plan.excludes
    assert [t.kind for t in plan.triggers] == ["daily"]
    assert plan.retention == Retention(keep_daily=14, keep_weekly=5, keep_monthly=12, keep_yearly=5)
    (dest,) = engine.destinations()
    assert dest.location == str(target)
    assert engine.destination_password(dest) == phrase
    listed = subprocess.run(
        [restic_bin, "-r", str(target), "--no-cache", "snapshots", "--json"],
        env=dict(os.environ, RESTIC_PASSWORD=phrase),
        check=True,
        capture_output=True,
        text=True,
    )
    (snapshot,) = json.loads(listed.stdout)
    assert snapshot["id"] == run.results[0].snapshot_id
    assert sorted(snapshot["paths"]) == sorted(plan.sources)
    with qtbot.waitSignal(wizard.plan_created, timeout=WAIT_MS) as signal:
        qtbot.mouseClick(wizard.button(QWizard.WizardButton.FinishButton), Qt.MouseButton.LeftButton)
    assert signal.args == [plan]


def finish_wizard(qtbot: QtBot, wizard: SetupWizard, kit: Path, name: str) -> Run:
    """From a passed connection test to the end of the first backup, with the defaults."""
    assert wizard.currentId() == PageId.TEST
    click_next(qtbot, wizard)
    qtbot.mouseClick(wizard.password.suggest, Qt.MouseButton.LeftButton)
    click_next(qtbot, wizard)
    wizard.kit.save_to(str(kit))
    click_next(qtbot, wizard)
    assert wizard.currentId() == PageId.SOURCES
    click_next(qtbot, wizard)
    click_next(qtbot, wizard)
    assert wizard.currentId() == PageId.SUMMARY
    wizard.summary.name.setText(name)
    click_next(qtbot, wizard)
    assert wizard.currentId() == PageId.FIRST_BACKUP
    qtbot.waitUntil(lambda: wizard.first_backup.run is not None, timeout=WAIT_MS)
    run = wizard.first_backup.run
    assert run is not None
    return run


def test_unusable_folder_shows_probe_message_and_stays(
    qtbot: QtBot, engine: Service, home: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    wizard = make_wizard(qtbot, engine, home)
    go_to_provider(qtbot, wizard, "local")
    form = wizard.provider.form()
    assert isinstance(form, LocalForm)
    form.folder.setText(str(blocker / "Backups"))
    click_next(qtbot, wizard)
    wait_for_probe(qtbot, wizard)
    result = wizard.test.result
    assert result is not None and not result.ok
    failed = next(s for s in result.steps if s.status.value == "failed")
    assert failed.message in wizard.test.summary.text()
    assert "✘" in wizard.test.summary.text()
    assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.NextButton), Qt.MouseButton.LeftButton)
    assert wizard.currentId() == PageId.TEST
    # going back and fixing the folder makes the test pass
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.BackButton), Qt.MouseButton.LeftButton)
    form.folder.setText(str(tmp_path / "good"))
    click_next(qtbot, wizard)
    wait_for_probe(qtbot, wizard)
    assert wizard.test.complete()


def test_connect_existing_repository_skips_kit(
    qtbot: QtBot, engine: Service, home: Path, tmp_path: Path
) -> None:
    existing = tmp_path / "existing"
    engine.add_destination("old", str(existing), password="the-old-password-1234")
    wizard = make_wizard(qtbot, engine, home)
    wizard.welcome.existing.setChecked(True)
    go_to_provider(qtbot, wizard, "local")
    form = wizard.provider.form()
    assert isinstance(form, LocalForm)
    form.folder.setText(str(existing))
    click_next(qtbot, wizard)
    wait_for_probe(qtbot, wizard)
    assert "There is a repository here" in wizard.test.steps.item(0).text()
    click_next(qtbot, wizard)
    assert wizard.currentId() == PageId.PASSWORD
    assert not wizard.password.confirm.isVisible()
    wizard.password.password.setText("the-old-password-1234")
    click_next(qtbot, wizard)
    assert wizard.currentId() == PageId.SOURCES
    click_next(qtbot, wizard)
    click_next(qtbot, wizard)
    assert "existing backup is connected" in wizard.summary.details.text()
    wizard.summary.destination.setText("Existing disk")
    click_next(qtbot, wizard)
    qtbot.waitUntil(lambda: wizard.first_backup.run is not None, timeout=WAIT_MS)
    assert len(engine.destinations()) == 2


@pytest.mark.parametrize("right_keys", [False, True])
def test_s3_keys_checked_by_the_probe(
    qtbot: QtBot,
    engine: Service,
    home: Path,
    tmp_path: Path,
    moto_s3: Any,
    right_keys: bool,
    screenshots: Path,
) -> None:
    wizard = make_wizard(qtbot, engine, home)
    go_to_provider(qtbot, wizard, "s3")
    form = wizard.provider.form()
    assert isinstance(form, S3Form)
    form.service.setCurrentIndex(form.service.findData("minio"))
    assert "MinIO console" in form.notes.text()
    form.endpoint.setText(moto_s3.endpoint)
    form.bucket.setText(moto_s3.plain_bucket)
    form.prefix.setText("wizard-" + ("ok" if right_keys else "bad"))
    with moto_s3.auth() as iam:
        if right_keys:
            user = iam.create_user(UserName="wizard")["User"]["UserName"]
            iam.put_user_policy(
                UserName=user,
                PolicyName="backup",
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                    }
                ),
            )
            key = iam.create_access_key(UserName=user)["AccessKey"]
            form.access_key.setText(key["AccessKeyId"])
            form.secret_key.setText(key["SecretAccessKey"])
        else:
            form.access_key.setText("AKIAWRONGWRONGWRONG1")
            form.secret_key.setText("not-the-secret")
        moto_s3.enable_auth()
        if not right_keys:
            shot(wizard, screenshots, "wizard-03-provider-s3")
        click_next(qtbot, wizard)
        wait_for_probe(qtbot, wizard)
    result = wizard.test.result
    assert result is not None
    if right_keys:
        assert result.ok, result.steps
        assert wizard.button(QWizard.WizardButton.NextButton).isEnabled()
        assert wizard.ctx.draft.location.startswith(f"s3:{moto_s3.endpoint}/{moto_s3.plain_bucket}/")
        assert wizard.ctx.draft.secrets == {"AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        run = finish_wizard(qtbot, wizard, tmp_path / "kit.pdf", "Office on S3")
        assert run.outcome is Outcome.SUCCESS, run
        (dest,) = engine.destinations()
        assert [s.id for s in engine.snapshots(dest.id)] == [run.results[0].snapshot_id]
    else:
        shot(wizard, screenshots, "wizard-04-test-s3-wrong-keys")
        assert not result.ok
        connect = result.step("connect")
        assert connect.status.value == "failed"
        assert "the access key or secret key is wrong" in connect.message
        assert connect.message in wizard.test.summary.text()
        assert "not-the-secret" not in wizard.test.summary.text()
        assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()


def test_sftp_trust_the_server_then_first_backup(
    qtbot: QtBot, engine: Service, home: Path, tmp_path: Path, sshd_server: SshServer, screenshots: Path
) -> None:
    wizard = make_wizard(qtbot, engine, home)
    go_to_provider(qtbot, wizard, "sftp")
    form = wizard.provider.form()
    assert isinstance(form, SftpForm)
    known_hosts = tmp_path / "known_hosts"  # Safekeep's own list: the server is not in it yet
    form.extra_options = {
        "sftp.known-hosts": str(known_hosts),
        "sftp.system-known-hosts": "",
        "sftp.agent": "false",
    }
    form.host.setText(sshd_server.host)
    form.port.setValue(sshd_server.port)
    form.user.setText(sshd_server.user)
    (tmp_path / "nas").mkdir()  # the folder the server's administrator made for the backups
    form.path.setText(str(tmp_path / "nas"))
    form.key_file.setText(str(sshd_server.client_key))
    shot(wizard, screenshots, "wizard-03-provider-sftp")
    click_next(qtbot, wizard)
    wait_for_probe(qtbot, wizard)
    assert not wizard.test.complete()
    assert wizard.test.trust.isVisible()
    assert sshd_server.fingerprint in wizard.test.trust.text()
    shot(wizard, screenshots, "wizard-04-test-sftp-unknown-server")
    qtbot.mouseClick(wizard.test.trust, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: wizard.test.result is not None and wizard.test.result.ok, timeout=WAIT_MS)
    assert sshd_server.host_key_line.split()[1] in known_hosts.read_text()
    run = finish_wizard(qtbot, wizard, tmp_path / "kit.pdf", "Office on the NAS")
    assert run.outcome is Outcome.SUCCESS, run
    (dest,) = engine.destinations()
    assert dest.location.startswith("sftp://root@127.0.0.1:")
    assert [s.id for s in engine.snapshots(dest.id)] == [run.results[0].snapshot_id]
