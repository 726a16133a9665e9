"""physgen-field/1 data layer: field files, statistics, torch datasets and importers."""

from physgen.data import fields as _fields
from physgen.data import importers as _importers
from physgen.data import join as _join
from physgen.data import split as _split
from physgen.data import stats as _stats
from physgen.data.atomic import atomic_output, write_json_atomic
from physgen.data.dataset import FieldDataset, Normalizer
from physgen.data.fields import (
    CONVENTIONS,
    COORD_DTYPE,
    FIELD_DTYPE,
    FIELDS_ATTR,
    MEMBER_DIM,
    SAMPLE_DIM,
    SCHEMA,
    SCHEMA_ATTR,
    SPATIAL_DIMS,
    TIME_DIM,
    FieldFileError,
    NonFiniteFieldWarning,
    check_hdf5_file,
    field_names,
    find_nonfinite,
    iter_sample_blocks,
    open_fields,
    spatial_dims,
    streamed_variables,
    validate_fields,
    write_fields,
)
from physgen.data.importers import READERS, import_fields, read_fno, read_pdebench, read_well
from physgen.data.join import join_fields
from physgen.data.split import (
    DEFAULT_FRACTIONS,
    SPLIT_NAMES,
    SplitResult,
    check_fractions,
    split_counts,
    split_fields,
    split_indices,
)
from physgen.data.stats import STATS_SCHEMA, FieldStats, compute_stats, load_stats, save_stats

__all__ = [
    *_fields.__all__,
    *_stats.__all__,
    *_importers.__all__,
    *_join.__all__,
    *_split.__all__,
    "FieldDataset",
    "Normalizer",
    "atomic_output",
    "write_json_atomic",
]
