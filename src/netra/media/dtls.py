"""DTLS interop: accept the ECDSA P-224 certificates that FFmpeg's WHIP muxer makes.

FFmpeg 8 built with GnuTLS (PyAV's wheels, many distributions) signs its DTLS handshake with a
self-signed ECDSA certificate on P-224 (`tls_gnutls.c`: GNUTLS_SEC_PARAM_MEDIUM). In DTLS 1.2
OpenSSL requires the peer certificate's curve to be one of its own supported groups
(`tls12_check_peer_sigalg`, SSL_R_WRONG_CURVE), and P-224 is not among the defaults, so aiortc
answers FFmpeg's ServerKeyExchange with alert 47 and FFmpeg reports "DTLS session failed".

The only remedy on the server is to add P-224 to the groups of the OpenSSL that aiortc uses,
the one inside `cryptography`:
- pyOpenSSL offers no per-context group setting, and `cryptography` 46 (OpenSSL 3.5) exposes
  no binding for one, so the groups come from an OpenSSL configuration file, read once when
  `cryptography` is first imported; `configure_openssl()` writes one, points OPENSSL_CONF at
  it for that import only, and puts the environment back.
- `cryptography` >= 47 bundles OpenSSL 4, built without the RFC 8422 curves deprecated for
  TLS: P-224 cannot be enabled at run time at all. Hence the pin `cryptography<47`.

Cost: every TLS/DTLS context of `cryptography`'s OpenSSL in this process (in Netra: aiortc's
DTLS only; aiohttp and the stdlib use the system's OpenSSL and are untouched) accepts P-224
(112-bit security) for certificates and ECDHE, listed last so that it is chosen only when the
peer offers nothing stronger. The certificate is still bound to the SDP fingerprint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiortc.rtcdtlstransport import RTCCertificate

logger = logging.getLogger(__name__)

# OpenSSL's default classical groups, then P-224; "?" lets an OpenSSL without it go on.
GROUPS = "X25519:P-256:X448:P-521:P-384:?P-224"
_CONFIG = f"""\
openssl_conf = netra_openssl_init
[netra_openssl_init]
ssl_conf = netra_ssl
[netra_ssl]
system_default = netra_system_default
[netra_system_default]
Groups = {GROUPS}
"""
_CRYPTOGRAPHY_OPENSSL = "cryptography.hazmat.bindings._rust"


def configure_openssl() -> None:
    """Add P-224 to the DTLS groups of `cryptography`'s OpenSSL (process-wide, idempotent).

    Must run before anything imports `cryptography` (aiortc, pyOpenSSL, PyJWT): OpenSSL reads
    its configuration once, at that import, so the first lines of `netra/__init__.py` are the
    place. Afterwards it does nothing. An operator's own OPENSSL_CONF is left alone (it must
    then list P-224 among its Groups). The environment is put back at once: child processes
    and the system's OpenSSL (the stdlib's ssl, aiohttp) keep their defaults.
    """
    if _CRYPTOGRAPHY_OPENSSL in sys.modules or "OPENSSL_CONF" in os.environ:
        return
    with tempfile.NamedTemporaryFile("w", prefix="netra-openssl-", suffix=".cnf") as file:
        file.write(_CONFIG)
        file.flush()
        os.environ["OPENSSL_CONF"] = file.name
        try:
            from OpenSSL import SSL  # loads cryptography's OpenSSL, which reads the file

            SSL.Context(SSL.DTLS_METHOD)
        finally:
            del os.environ["OPENSSL_CONF"]


def accept_ffmpeg_certificates() -> bool:
    """configure_openssl(), then check that aiortc's DTLS now accepts FFmpeg's default (P-224)
    certificates. Returns False, and logs why, when it does not: configure_openssl() ran too
    late, or this OpenSSL has no P-224 for TLS (`cryptography` >= 47)."""
    configure_openssl()
    accepted = accepts_p224_certificates()
    if not accepted:
        from cryptography.hazmat.backends.openssl import backend

        logger.warning(
            "DTLS refuses ECDSA P-224 certificates, so FFmpeg's WHIP muxer cannot publish "
            "with its defaults (%s; needs cryptography<47 and netra.media.dtls."
            "configure_openssl() called before cryptography is imported)",
            backend.openssl_version_text(),
        )
    return accepted


def accepts_p224_certificates() -> bool:
    """Whether aiortc's DTLS completes a handshake with a peer whose certificate is on P-224,
    as FFmpeg's is (an in-memory handshake: aiortc's context as client, as with FFmpeg's
    default `a=setup:passive`, against one made with a P-224 certificate)."""
    from OpenSSL import SSL

    from netra.media import aiortc_private

    client = SSL.Connection(aiortc_private.dtls_context(_certificate(p224=False)))
    server = SSL.Connection(aiortc_private.dtls_context(_certificate(p224=True)))
    client.set_connect_state()
    server.set_accept_state()
    done = {client: False, server: False}
    for _ in range(20):  # a DTLS 1.2 handshake is 4 flights
        for side in (client, server):
            if not done[side]:
                try:
                    side.do_handshake()
                    done[side] = True
                except SSL.WantReadError:
                    pass
                except SSL.Error:
                    return False
        if all(done.values()):
            return True
        for source, sink in ((client, server), (server, client)):
            with contextlib.suppress(SSL.WantReadError):
                sink.bio_write(source.bio_read(65536))
    return False


def _certificate(*, p224: bool) -> RTCCertificate:
    from aiortc.rtcdtlstransport import RTCCertificate
    from cryptography.hazmat.primitives.asymmetric import ec

    if not p224:
        return RTCCertificate.generateCertificate()
    key = ec.generate_private_key(ec.SECP224R1())
    return RTCCertificate(key=key, cert=self_signed(key, "ffmpeg"))


def self_signed(key: Any, common_name: str) -> Any:
    """A self-signed X.509 certificate for `key`, valid a day either side of now: what WebRTC
    endpoints make for themselves (the SDP fingerprint, not a CA, vouches for it)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
