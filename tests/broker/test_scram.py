"""SCRAM-SHA-256 (midge/scram.py) against RFC 7677's test vector and itself."""

from __future__ import annotations

import base64

import pytest

from midge import scram

# RFC 7677, section 3: user "user", password "pencil".
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_the_server_accepts_the_rfc_7677_exchange(monkeypatch: pytest.MonkeyPatch) -> None:
    credential = scram.make_credential("pencil", 4096, RFC_SALT)
    server = scram.ScramServer()
    monkeypatch.setattr(scram.secrets, "token_urlsafe", lambda n: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    assert server.first(RFC_CLIENT_FIRST, {"user": credential}) == RFC_SERVER_FIRST
    assert server.final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert server.username == "user"


def test_a_wrong_password_fails_at_the_proof() -> None:
    credentials = {"alice": scram.make_credential("right")}
    client = scram.ScramClient("alice", "wrong")
    server = scram.ScramServer()
    final = client.final(server.first(client.first(), credentials))
    with pytest.raises(scram.ScramError, match="wrong password"):
        server.final(final)


def test_an_unknown_user_looks_like_a_wrong_password() -> None:
    client = scram.ScramClient("nobody", "x")
    server = scram.ScramServer()
    server_first = server.first(client.first(), {})
    assert b",s=" in server_first and b",i=4096" in server_first  # a salt all the same
    with pytest.raises(scram.ScramError, match="wrong password"):
        server.final(client.final(server_first))


def test_client_and_server_agree_and_the_client_checks_the_server() -> None:
    credentials = {"a,b=c": scram.make_credential("pw", iterations=1000)}
    client = scram.ScramClient("a,b=c", "pw")
    server = scram.ScramServer()
    server_final = server.final(client.final(server.first(client.first(), credentials)))
    assert server.username == "a,b=c"  # saslname escaping round-trips
    client.verify(server_final)
    with pytest.raises(scram.ScramError):
        client.verify(b"v=" + base64.b64encode(b"\x00" * 32))


def test_credentials_round_trip_through_their_text_form() -> None:
    credential = scram.make_credential("pw")
    assert scram.parse_credential(scram.format_credential(credential)) == credential


@pytest.mark.parametrize(
    "bad",
    [b"p=tls-unique,,n=u,r=x", b"n,,r=x", b"n,,n=u", b"", b"\xff", b"n,,n=u,r="],
)
def test_a_malformed_client_first_message_is_refused(bad: bytes) -> None:
    with pytest.raises(scram.ScramError):
        scram.ScramServer().first(bad, {})


def test_a_replayed_or_altered_final_message_is_refused() -> None:
    credentials = {"u": scram.make_credential("pw")}
    client = scram.ScramClient("u", "pw")
    server = scram.ScramServer()
    final = client.final(server.first(client.first(), credentials))
    other = scram.ScramServer()  # another exchange: another nonce
    other.first(scram.ScramClient("u", "pw").first(), credentials)
    with pytest.raises(scram.ScramError, match="nonce"):
        other.final(final)
    with pytest.raises(scram.ScramError):
        server.final(final.replace(b"c=biws", b"c=eSws"))
