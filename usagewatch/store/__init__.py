"""The store: findings, outbox, checkpoints and rule windows behind one ``Store`` object.

``Store.commit`` writes a batch's finding updates, their outbox rows, the window state and the
source checkpoints in ONE transaction: either the findings and the offsets that produced them are
both saved, or neither is, so a crash can neither lose a query nor count it twice.
"""

from usagewatch.store.store import Batch, Store, finding_dict, window_owner

__all__ = ["Batch", "Store", "finding_dict", "window_owner"]
