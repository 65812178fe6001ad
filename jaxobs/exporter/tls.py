"""The exporter's TLS context, with errors that name the file and what is wrong with it.

OpenSSL's own messages (``[SSL] PEM lib``) say neither which file nor why,
and an encrypted key without a password makes OpenSSL *prompt on the
terminal* — a hung sidecar with a TTY, ``[Errno 22]`` without one.  So the
password always comes from a file or an environment variable (never a
prompt: the callback returns it or an empty one), and every failure is
re-checked file by file to say which one is at fault.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

PASSWORD_ENV = "JAXOBS_EXPORTER_TLS_KEY_PASSWORD"
#: Larger than any certificate chain or key; a bigger file is the wrong file.
MAX_PEM_BYTES = 1024 * 1024


class TlsConfigError(ValueError):
    """A TLS file is missing, unreadable, not PEM, encrypted without a password, or mismatched."""


def read_key_password(password_file: str | None) -> str | None:
    """The key's password from ``password_file``, else ``$JAXOBS_EXPORTER_TLS_KEY_PASSWORD``."""
    if password_file:
        try:
            return Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise TlsConfigError(f"--tls-key-password-file {password_file}: cannot read it ({exc})") from None
    return os.environ.get(PASSWORD_ENV) or None


def _pem(path: str, option: str, marker: str, what: str) -> str:
    try:
        size = os.stat(path).st_size
        if size > MAX_PEM_BYTES:
            raise TlsConfigError(f"{option} {path}: {size} bytes is too large for a PEM {what}")
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except TlsConfigError:
        raise
    except OSError as exc:
        raise TlsConfigError(f"{option} {path}: cannot read it ({exc.strerror or exc})") from None
    if marker not in text:
        raise TlsConfigError(f"{option} {path}: no PEM {what} in it (expected a '-----BEGIN {marker}' block)")
    return text


def server_context(cert: str, key: str, password: str | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ server context, or :class:`TlsConfigError` naming the file and the problem."""
    _pem(cert, "--tls-cert", "CERTIFICATE-----", "certificate")
    key_text = _pem(key, "--tls-key", "PRIVATE KEY-----", "private key")
    encrypted = "ENCRYPTED" in key_text
    if encrypted and not password:
        raise TlsConfigError(f"--tls-key {key}: the key is encrypted; pass its password with "
                             f"--tls-key-password-file or {PASSWORD_ENV}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    secret = (password or "").encode()
    try:
        ctx.load_cert_chain(cert, key, password=lambda: secret)  # a callback: OpenSSL never prompts
    except ssl.SSLError as exc:
        raise TlsConfigError(_explain(exc, cert, key, encrypted)) from None
    except OSError as exc:
        raise TlsConfigError(f"--tls-cert {cert} / --tls-key {key}: {exc.strerror or exc}") from None
    return ctx


def _explain(exc: ssl.SSLError, cert: str, key: str, encrypted: bool) -> str:
    text = f"{exc.reason or ''} {exc}".upper()
    if "KEY_VALUES_MISMATCH" in text or "KEY VALUES MISMATCH" in text:
        return f"--tls-key {key} does not belong to --tls-cert {cert} (their public keys differ)"
    if encrypted and ("BAD_DECRYPT" in text or "BAD DECRYPT" in text or "PEM" in text):
        return f"--tls-key {key}: wrong password for the encrypted key"
    try:  # which file does OpenSSL reject on its own?
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=cert)
    except ssl.SSLError:
        return f"--tls-cert {cert}: not a valid PEM certificate ({exc.reason or exc})"
    return f"--tls-key {key}: not a valid PEM private key for {cert} ({exc.reason or exc})"
