"""Datasets for fine-tuning and explaining text classifiers.

``load_task(task, data_dir, split)`` returns a ``datasets.Dataset`` with the columns ``text``,
``text_pair`` (sentence-pair tasks) and ``label``; ``TASKS`` maps each named task to its
:class:`TaskSpec` (``num_labels``, ``label_names``, files and layout). :func:`bundled_sst2_dir`: the
SST-2 files that ship inside the package (the demo's data).
"""

from lrp_kernels.data.readers import read_table
from lrp_kernels.data.tasks import (
    SPLITS,
    TASKS,
    TaskSpec,
    bundled_sst2_dir,
    generic_task,
    get_task,
    has_labels,
    hub_offline,
    load_hub_task,
    load_task,
    split_path,
)

__all__ = [
    "SPLITS",
    "TASKS",
    "TaskSpec",
    "bundled_sst2_dir",
    "generic_task",
    "get_task",
    "has_labels",
    "hub_offline",
    "load_hub_task",
    "load_task",
    "read_table",
    "split_path",
]
