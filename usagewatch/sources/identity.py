"""Is this the file we were reading? Identity checks for followed log files.

Device+inode alone is not enough (inodes are reused after a delete; a file truncated in place keeps
its inode), and neither is a hash of the first bytes (two logs may start with the same server
banner). A cursor therefore carries three things, all checked with two small ``pread``s:

- device+inode: the cheap check, and the key under which the cursor is saved;
- a hash of the first ``head_len`` bytes (up to ``HEAD_BYTES``): catches inode reuse and a log
  truncated and rewritten (``log_truncate_on_rotation``);
- a hash of the ``MARK_BYTES`` just before the saved offset: catches truncate-and-regrow where the
  head happens to be identical, and proves that a *copy* (copytruncate's ``a.1``) holds exactly
  what was already read up to the offset.
"""

from __future__ import annotations

import hashlib
import os

from usagewatch.model import FileCursor

HEAD_BYTES = 1024
MARK_BYTES = 64


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def mark_of(fd: int, offset: int) -> str:
    """Hash of the bytes just before ``offset`` in the open file ``fd``."""
    start = max(0, offset - MARK_BYTES)
    return digest(os.pread(fd, offset - start, start))


def same_content(c: FileCursor, fd: int, size: int) -> bool:
    """Whether the open file holds, up to ``c.offset``, what ``c`` says was read (head and mark)."""
    if size < c.offset:
        return False
    if digest(os.pread(fd, c.head_len, 0)) != c.head_hash:
        return False
    return not c.mark_hash or mark_of(fd, c.offset) == c.mark_hash


def same_file(c: FileCursor, st: os.stat_result, fd: int) -> bool:
    """``c`` describes the file open as ``fd`` (same inode and same content up to the offset)."""
    return (c.dev, c.inode) == (st.st_dev, st.st_ino) and same_content(c, fd, st.st_size)
