"""Argon2id password hashing, off the event loop, in threads of its own.

Cost: 19 MiB of memory, 2 passes, 1 lane: OWASP's minimum for Argon2id. It keeps one login
near 20-30 ms on this project's 2-core reference machine (measured by bench/login.py), which
makes an offline attack on a leaked hash expensive while a login stays well below what a user
notices. Hashing runs in a thread so that logins never stall other requests, and in threads
no plugin shares: a plugin blocking its own threads (or the loop's default executor) delays no
login. One thread per core (two at least): Argon2 with one lane keeps one core busy, more
threads would only queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32,
                        salt_len=16, type=Type.ID)
# Verified when the user does not exist, so that an unknown username costs the same time.
_DUMMY_HASH = HASHER.hash("no such user: constant time")
# Threads start when first needed; a process-wide pool, as the hasher is.
EXECUTOR = concurrent.futures.ThreadPoolExecutor(max(2, os.cpu_count() or 1),
                                                 thread_name_prefix="argon2")


async def hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(EXECUTOR, HASHER.hash, password)


async def verify_password(hashed: str | None, password: str) -> bool:
    """True if `password` matches `hashed`; `hashed` None still costs one verification."""

    def verify() -> bool:
        try:
            return HASHER.verify(hashed or _DUMMY_HASH, password) and hashed is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.get_running_loop().run_in_executor(EXECUTOR, verify)
