"""Run a command under the seccomp filters systemd would load for deploy/hefestus.service.

Used by tests/test_deploy.py, which execs this file as a script (so it imports nothing of
the tests): ``python sandbox.py --sandbox SPEC -- COMMAND [ARGS...]``.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import sys
from typing import Any, NoReturn


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _sandbox_exec(spec: dict[str, Any], argv: list[str]) -> NoReturn:
    """Load the filters systemd would load for the unit, then exec ``argv`` under them.

    Two stacked filters, as systemd does: first MemoryDenyWriteExecute and the address
    families (default allow), then the system-call allow-list (default: the unit's errno).
    libseccomp sets no_new_privs, like NoNewPrivileges=yes.
    """
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    allow, eq, masked_eq = 0x7FFF0000, 4, 7

    def act_errno(code: int) -> int:
        return 0x00050000 | (code & 0xFFFF)

    def rule(ctx: int, action: int, name: str, *conds: tuple[int, int, int, int]) -> None:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr == -1:  # not a system call of this architecture (e.g. _llseek on x86_64)
            return
        array = (_ArgCmp * max(len(conds), 1))(*[_ArgCmp(*c) for c in conds])
        rc = lib.seccomp_rule_add_array(ctx, action, nr, len(conds), array if conds else None)
        if rc < 0 and nr >= 0:
            raise OSError(-rc, f"seccomp_rule_add({name})")

    first = lib.seccomp_init(allow)
    if spec["mdwe"]:  # what systemd's MemoryDenyWriteExecute=yes installs
        w_x, prot_exec, shm_exec = 0x2 | 0x4, 0x4, 0o100000
        rule(first, act_errno(errno.EPERM), "mmap", (2, masked_eq, w_x, w_x))
        rule(first, act_errno(errno.EPERM), "mprotect", (2, masked_eq, prot_exec, prot_exec))
        rule(first, act_errno(errno.EPERM), "pkey_mprotect", (2, masked_eq, prot_exec, prot_exec))
        rule(first, act_errno(errno.EPERM), "shmat", (2, masked_eq, shm_exec, shm_exec))
    if spec["families"]:
        for family in range(0, 64):
            if family not in spec["families"]:
                rule(first, act_errno(errno.EAFNOSUPPORT), "socket", (0, eq, family, 0))
    if lib.seccomp_load(first) < 0:
        raise OSError("seccomp_load (MemoryDenyWriteExecute, RestrictAddressFamilies) failed")
    if spec["allow"]:
        second = lib.seccomp_init(act_errno(spec["errno"]))
        for name in spec["allow"]:
            rule(second, allow, name)
        if lib.seccomp_load(second) < 0:
            raise OSError("seccomp_load (SystemCallFilter) failed")
    os.execv(argv[0], argv)


def sandboxed(spec: dict[str, Any], argv: list[str]) -> list[str]:
    return [sys.executable, __file__, "--sandbox", json.dumps(spec), "--", *argv]


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--sandbox" and sys.argv[3] == "--":
        _sandbox_exec(json.loads(sys.argv[2]), sys.argv[4:])
    sys.exit("usage: sandbox.py --sandbox SPEC -- COMMAND [ARGS...]")
