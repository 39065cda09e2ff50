"""The one masking rule: which values are hidden, by value in free text and by position in unit files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unitctl import diff, github, history, masking, probe
from unitctl.preimport import service_view

MASK = masking.MASK


@pytest.mark.parametrize("name", ["SESSION_SALT", "DJANGO_SALT", "API_TOKEN", "DB_PASS", "SENTRY_DSN", "auth_header"])
def test_a_four_character_value_of_a_secret_name_is_masked(name: str) -> None:
    assert masking.should_mask(name, "k9Zq")
    assert masking.mask("login failed for k9Zq.", {name: "k9Zq"}) == f"login failed for {MASK}."


def test_salt_is_a_secret_name_part() -> None:
    assert "SALT" in masking.SECRET_PARTS and masking.is_secret_name("PASSWORD_salt")


@pytest.mark.parametrize("value", ["abc", "true", "False", "yes", "off", ""])
def test_tiny_or_boolean_values_are_not_searched_for_even_under_a_secret_name(value: str) -> None:
    assert not masking.should_mask("SESSION_COOKIE_SECURE", value)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("correcthorse", True),  # long enough, whatever the (harmless) name
        ("Zm9vYmFyYmF6", True),
        ("prod", False),  # short: would shred output
        ("app:app", False),
        ("12345678", False),  # a number (port, count, size)
        ("0.5", False),
        ("/srv/shop/data/app.sqlite", False),  # an absolute path is where things are, not a secret
        ("/srv/app:/srv/lib", False),  # a PATH-like list of them
        ("/x/postgres://u:p@h", True),  # not a path: it carries a URL password
        ("on", False),
    ],
)
def test_values_of_harmless_names(value: str, masked: bool) -> None:
    assert masking.should_mask("UPSTREAM", value) is masked


def test_free_text_masks_values_urls_and_secret_assignments_but_keeps_tracebacks_readable() -> None:
    env = {"UPSTREAM": "harmless-looking-v4lue", "DATABASE_URL": "postgresql://app:pw99x@db/app", "MODE": "prod"}
    text = (
        "Traceback: KeyError: 'DATABASE_URL'\n"
        "ConnectionError: postgresql://app:pw99x@db/app refused; token: tk_1 API_KEY='k-2'\n"
        "upstream harmless-looking-v4lue in mode prod; Authorization: Bearer eyJhbGc.x.y\n"
    )
    out = masking.mask(text, env)
    for secret in ("pw99x", "tk_1", "k-2", "harmless-looking-v4lue", "eyJhbGc"):
        assert secret not in out
    assert "KeyError: 'DATABASE_URL'" in out and "mode prod" in out
    assert f"token: {MASK}" in out and f"Authorization: Bearer {MASK}" in out


def test_a_value_containing_another_is_masked_whole() -> None:
    out = masking.mask("x=abcdefgh-and-more", {"A_TOKEN": "abcdefgh", "B_TOKEN": "abcdefgh-and-more"})
    assert out == f"x={MASK}"


def test_remembered_values_are_masked_by_every_writer() -> None:
    masking.remember({"API_TOKEN": "tok-remembered-1"})
    line = "crash: tok-remembered-1"
    assert "tok-remembered-1" not in masking.mask(line)
    assert "tok-remembered-1" not in probe.sanitize_excerpt(line.encode())
    assert "tok-remembered-1" not in "".join(github.annotation_lines({"exit_code": 4, "error": line}))
    assert "tok-remembered-1" not in github.summary_markdown({"exit_code": 4, "record": {"journal": [line]}})
    rec = history.Record(time="t", unit="u.service", command="apply", outcome="refused", exit_code=3, reason=line)
    rec.journal.append(line)
    rec.phases.append(history.Phase("guard", 1.0, False, line))
    assert "tok-remembered-1" not in str(rec.to_json())
    masking.forget()
    assert masking.mask(line) == line


def test_a_probe_excerpt_is_masked_before_it_is_cut() -> None:
    masking.remember({"API_TOKEN": "0123456789abcdef"})
    body = "x" * 195 + " 0123456789abcdef"
    assert "01234" not in probe.sanitize_excerpt(body)


UNIT = """\
[Service]
Environment="DB_PASSWORD=hunter2" PLAIN=visible
SetCredential=dbpass:letmein
SetCredential=multi:line-one \\
  line-two
LoadCredential=tls:/etc/ssl/key.pem
ExecStart=/v/bin/gunicorn -e SESSION_SECRET=abc --env=API_KEY=xyz -eTOKEN=q1 -e PLAIN=v1 \\
    --env \\
    "STRIPE_KEY=sk live" --bind 127.0.0.1:8000 app:app
ExecStartPre=/usr/bin/curl https://deploy:pw-in-url@hooks.example/start
# old: redis://:commented-pw@cache
"""


def test_unit_text_masks_by_position_every_other_byte_kept() -> None:
    out = masking.mask_unit_text(UNIT)
    for secret in ("hunter2", "letmein", "line-two", "abc", "xyz", "q1", "sk live", "pw-in-url", "commented-pw"):
        assert secret not in out, secret
    assert f'Environment="DB_PASSWORD={MASK}" PLAIN=visible\n' in out
    assert f"SetCredential=dbpass:{MASK}\n" in out
    assert "LoadCredential=tls:/etc/ssl/key.pem\n" in out  # a path; its content is the secret
    assert f"-e SESSION_SECRET={MASK} --env=API_KEY={MASK} -eTOKEN={MASK} -e PLAIN=v1 \\\n" in out
    assert f'    --env \\\n    "STRIPE_KEY={MASK}" --bind 127.0.0.1:8000 app:app\n' in out
    assert f"https://deploy:{MASK}@hooks.example/start" in out
    assert masking.mask_unit_text(out) == out


def test_an_empty_credential_has_nothing_to_mask() -> None:
    # "id:" with no value: a mask would claim a secret where there is none (and change the diff for nothing).
    text = "[Service]\nSetCredential=tok:\nSetCredential=tok2:   \nSetCredential=db:s3cret\n"
    assert masking.mask_unit_text(text) == text.replace("s3cret", MASK)


def test_a_four_character_url_password_is_learned_a_three_character_one_is_not() -> None:
    assert "k9Zq" in masking.secret_values({"CACHE": "redis://:k9Zq@cache"})
    assert "k9Z" not in masking.secret_values({"CACHE": "redis://:k9Z@cache"})


def test_diff_hides_a_secret_gunicorn_argument() -> None:
    old = "[Service]\nExecStart=/g -e SESSION_SECRET=old-secret-1 app:app\n"
    new = "[Service]\nExecStart=/g -e SESSION_SECRET=new-secret-2 app:app\n"
    result = diff.compare(old, new, old_name="a", new_name="b")
    assert result.differs and result.secrets_only
    assert "secret" in result.summary


def _unit(tmp_path: Path, body: str) -> str:
    return f"[Service]\nType=notify\n{body}ExecStart=/srv/venv/bin/gunicorn -e GUNI_SECRET=g-value-1 app:app\n"


def test_the_service_view_learns_every_value_the_unit_gives_the_service(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text(
        "# a comment\n"
        "API_TOKEN=tok-from-file\n"
        "export IGNORED=x\n"
        'DATABASE_URL="postgresql://app:db-pw-99@db/app"\n'
        "HARMLESS_NAME='file value long enough'\n"
        "SHORT_TOKEN=ab12\n"
    )
    os.chmod(env_file, 0o600)
    key = tmp_path / "tls.key"
    key.write_text("-----BEGIN KEY-----credential-bytes\n")
    body = (
        'Environment="UPSTREAM=inline-harmless-1" "MODE=prod"\n'
        f"EnvironmentFile=-{env_file}\nEnvironmentFile=-{tmp_path}/missing.env\n"
        f"SetCredential=pw:set-cred-123\nLoadCredential=tls:{key}\n"
    )
    view = service_view(_unit(tmp_path, body), unit="shop.service", unit_dir=tmp_path / "units")
    assert view.environment == {"UPSTREAM": "inline-harmless-1", "MODE": "prod"}  # what the check unit gets
    assert view.env["API_TOKEN"] == "tok-from-file" and view.env["GUNI_SECRET"] == "g-value-1"
    assert "IGNORED" not in view.env and "export IGNORED" not in view.env  # systemd ignores the line
    leaked = (
        "tok-from-file db-pw-99 file value long enough ab12 inline-harmless-1 g-value-1 set-cred-123 "
        "-----BEGIN KEY-----credential-bytes mode prod"
    )
    out = masking.mask(leaked)  # remembered: no env passed
    secrets = ("tok-from-file", "db-pw-99", "file value", "ab12", "inline-harmless", "g-value", "set-cred", "BEGIN")
    for secret in secrets:
        assert secret not in out, (secret, out)
    assert out.endswith("mode prod")
    assert masking.mask(leaked, view.env) == out  # the engine's call gives the same answer


def test_the_installed_units_values_are_learned_too(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    (units / "shop.service").write_text(_unit(tmp_path, 'Environment="OLD_TOKEN=previous-release-secret"\n'))
    service_view(_unit(tmp_path, ""), unit="shop.service", unit_dir=units)
    assert "previous-release-secret" not in masking.mask("rolled back: previous-release-secret")


def test_a_fifo_named_as_environment_file_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.env"
    os.mkfifo(fifo)
    view = service_view(_unit(tmp_path, f"EnvironmentFile=-{fifo}\n"), unit="shop.service", unit_dir=tmp_path)
    assert "GUNI_SECRET" in view.env


def test_environment_files_are_read_as_systemd_reads_them() -> None:
    from unitctl.gunicorn import parse_env_file

    text = (
        '  # comment\n; also a comment\nA=1\nB = "x y\\"z\\$"  \nC=\'lit \\n\' rest\n'
        "D=foo\\\nbar  \nexport E=1\nG=\nH=a#b\nno equals sign\n9BAD=x\n"
    )
    assert parse_env_file(text) == {"A": "1", "B": 'x y"z$', "C": "lit \\nrest", "D": "foobar", "G": "", "H": "a#b"}


def test_verify_findings_never_quote_a_secret(tmp_path: Path) -> None:
    from unitctl.verify import _unit_values

    text = (
        "[Service]\nEnvironment=API_TOKEN=tok-verify-1 UPSTREAM=harmless-but-long\nSetCredential=pw:cred-value-9\n"
        "ExecStart=/v/bin/gunicorn --workers nine app:app\n"
    )
    env = _unit_values(text)
    assert env["API_TOKEN"] == "tok-verify-1" and env["$CREDENTIALS_DIRECTORY/pw"] == "cred-value-9"
    line = "line 2: Environment=API_TOKEN=tok-verify-1 UPSTREAM=harmless-but-long, cred-value-9"
    assert masking.mask(line, env) == f"line 2: Environment=API_TOKEN={MASK} UPSTREAM={MASK}, {MASK}"
