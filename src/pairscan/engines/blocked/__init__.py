"""The blocked engine: exact pairwise-complete correlation from matrix products.

:mod:`.kernel` is the maths on arrays (no I/O); :mod:`.tasks` cuts the panel into
pairs of column blocks, one task each, wherever the placement plan put the panel, and
merges the tasks' results with a reducer.
"""

from .kernel import (Lifetimes, blas_threads, block_pairs, block_size_for, block_specs, correlate_block,
                     correlate_blocks, correlate_split, overlap_corr, prepare)
from .tasks import (Block, BlockJob, BlockSource, EveryPair, Reducer, StoreBlocks, TopPairs, block_task,
                    correlate_blocked)

__all__ = [
    "Block", "BlockJob", "BlockSource", "EveryPair", "Lifetimes", "Reducer", "StoreBlocks", "TopPairs",
    "blas_threads", "block_pairs", "block_size_for", "block_specs", "block_task", "correlate_block",
    "correlate_blocked", "correlate_blocks", "correlate_split", "overlap_corr", "prepare",
]
