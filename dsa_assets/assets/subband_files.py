"""The correlator's subband files, declared as an external asset so lineage starts at the data.

Dagster does not produce them; the arrival sensor records a materialization of a window's
partition when an observation's files are all present (or a partial group is accepted).
"""

import dagster as dg

from .. import partitions

SUBBAND_FILES = dg.AssetSpec(
    key="subband_files",
    partitions_def=partitions.OBSERVATION_PARTITIONS,
    group_name="observations",
    kinds={"hdf5"},
    description="UVH5 subband files written by the correlator (16 per observation, ~309 s apart).",
)
