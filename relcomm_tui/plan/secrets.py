"""Secret references: resolve a password from the keyring, the environment or a command.

The plan only ever holds a reference; values are resolved when needed, kept in memory,
and never written to disk, logs or the ledger. Errors say which reference failed and how
to fix it, and never include the value.
"""

from __future__ import annotations

import concurrent.futures
import os
import shlex
import subprocess

from ..common.errors import UserError
from .consent import ALLOW_HINT, may_run
from .references import SecretUse, is_reference, secret_uses  # noqa: F401  (the names callers use)
from .schema import CommandSecret, EnvSecret, KeyringSecret, SecretRef


class SecretError(UserError):
    """A secret reference that cannot be resolved; `hint` says what to do."""


class CommandNotAllowed(SecretError):
    """A { command = ... } secret in a plan whose commands have no consent on this host."""


def describe(ref: SecretRef) -> str:
    """How the user wrote the reference, safe to print."""
    if isinstance(ref, KeyringSecret):
        return f"keyring {ref.keyring!r}"
    if isinstance(ref, EnvSecret):
        return f"environment variable {ref.env}"
    return f"command {ref.command!r}"


def resolve(ref: SecretRef, timeout: float = 10.0) -> str:
    """The secret's value. Blocking: call it from a worker thread in the app."""
    if isinstance(ref, EnvSecret):
        value = os.environ.get(ref.env)
        if not value:
            raise SecretError(
                f"environment variable {ref.env} is not set",
                f"export {ref.env}=... in the shell that runs relcomm",
            )
        return value
    if isinstance(ref, CommandSecret):
        return _from_command(ref, timeout)
    return _from_keyring(ref.keyring, timeout)


def _from_command(ref: CommandSecret, timeout: float) -> str:
    """Run a password command from the plan's folder, only if consent covers it as it is now."""
    command, folder = ref.command, ref._folder
    try:
        argv = shlex.split(command)
    except ValueError:
        argv = []
    if not argv:
        raise SecretError(f"password command {command!r} cannot be split into words", "check its quotes")
    if "/" in argv[0] and not os.path.isabs(argv[0]) and folder is not None:
        argv[0] = os.path.join(folder, argv[0])  # scripts/pw.sh is the plan's, not the current folder's
    # Consent looks at the files the command names now; the process starts right after.
    if folder is None or not may_run(folder, command):
        raise CommandNotAllowed("this plan's commands are not allowed on this host yet", ALLOW_HINT)
    try:
        done = subprocess.run(
            argv, cwd=folder, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise SecretError(f"password command not found: {argv[0]!r}",
                          "install it or fix `command` in the plan (a relative path is from the plan's folder)") from None
    except subprocess.TimeoutExpired:
        raise SecretError(f"password command {command!r} did not finish within {timeout:g} s", "does it wait for input?") from None
    except OSError as error:  # not executable, a folder, a bad interpreter line
        raise SecretError(f"password command {command!r} cannot run: {error.strerror}",
                          "is it an executable file? (chmod +x, and check its #! line)") from None
    if done.returncode != 0:
        raise SecretError(
            f"password command {command!r} failed (exit {done.returncode})",
            "run it by hand from the plan's folder to see why (its error output is not shown: it may hold the secret)",
        )
    value = done.stdout.splitlines()[0] if done.stdout else ""
    if not value:
        raise SecretError(f"password command {command!r} printed nothing", "it must print the secret on its first line")
    return value


def _from_keyring(name: str, timeout: float) -> str:
    service, _, user = name.partition(":")

    def lookup() -> str | None:
        import keyring  # imported late: its backend discovery is slow and may fail

        return keyring.get_password(service, user)

    # A locked or absent keyring backend may block (D-Bus prompts over SSH); bound the wait.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        value = pool.submit(lookup).result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise SecretError(f"the OS keyring did not answer within {timeout:g} s for {name!r}", "it may be locked; use { env = ... } or { command = ... } over SSH") from None
    except Exception as error:  # keyring raises backend-specific errors
        raise SecretError(
            f"no usable OS keyring for {name!r}: {type(error).__name__}: {error}".strip(),
            "over SSH there is often no keyring: use { env = \"VAR\" } or { command = \"pass show ...\" }",
        ) from None
    finally:
        pool.shutdown(wait=False)
    if value is None:
        raise SecretError(f"nothing stored in the OS keyring under {name!r}", f"store it with: keyring set {service} {user}")
    return value


def login_password(smtp: object, timeout: float = 10.0) -> str:
    """The SMTP login's password from the plan's reference (blocking: keyring, commands).

    The one lookup: `app.credentials` asks the user when this fails, and the email channel calls it
    when started without a password. Raises SecretError saying what is missing and how to fix it.
    """
    reference = getattr(smtp, "password", None)
    username = getattr(smtp, "username", None)
    if reference is None or not is_reference(reference):
        raise SecretError(f"the SMTP login {username!r} needs a password and the plan names none",
                          'add password = { env = "RELCOMM_SMTP_PASSWORD" } to [transport.smtp], or give it when asked')
    return resolve(reference, timeout)
