"""physgen-field/1 data layer: field files, statistics, torch datasets and importers."""

from physgen.data import fields as _fields
from physgen.data.atomic import atomic_output, write_json_atomic
from physgen.data.fields import (
    CONVENTIONS,
    COORD_DTYPE,
    FIELD_DTYPE,
    FIELDS_ATTR,
    SAMPLE_DIM,
    SCHEMA,
    SCHEMA_ATTR,
    SPATIAL_DIMS,
    TIME_DIM,
    FieldFileError,
    NonFiniteFieldWarning,
    field_names,
    find_nonfinite,
    open_fields,
    spatial_dims,
    validate_fields,
    write_fields,
)

__all__ = [*_fields.__all__, "atomic_output", "write_json_atomic"]
