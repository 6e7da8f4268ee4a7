"""The fuzz of test_fuzz.py on a node with plain ACL on: most frames signed (after their
mutation) by an admin account so that they reach the handlers, the ACL admin codes included,
the rest refused by the ACL check itself, which must take any hostile frame as calmly."""

from __future__ import annotations

from test_fuzz import fuzz, sandbox
from rmqnode.acl.signature import sign

ADMIN, SECRET = "fuzzadmin", "fuzzsecret"
FRAMES = 20_000


def signed(fields: dict, body: bytes) -> dict:
    """The fields signed as Java's AclClientRPCHook signs them; mutated values that are not
    text (raw JSON numbers, nulls) go unsigned, and are refused."""
    out = {k: str(v) if type(v) is int else v for k, v in fields.items()}
    if not all(isinstance(v, str) for v in out.values()):
        return fields
    sign(out, body, ADMIN, SECRET)
    return out


def test_fuzz_with_acl_on(tmp_path, start_node):
    home, _ = sandbox(tmp_path)
    (home / "conf").mkdir()
    (home / "conf" / "plain_acl.yml").write_text(
        f"accounts:\n  - accessKey: {ADMIN}\n    secretKey: {SECRET}\n    admin: true\n")
    fuzz(tmp_path, start_node, FRAMES, "-D", "aclEnable=true", sign=signed,
         home=home)
