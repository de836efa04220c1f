"""The user-facing configs: one `get_config(variant)` file per study and one
for training (`train.py`), each returning an ml_collections `ConfigDict` built
from the typed settings of `repro_jax` (cpu / smoke / paper variants).

The entry points read them with `--config=configs/<name>.py:<variant>`; the
package is installed beside `experiments`, so the default configs and a
`configs/<name>.py` path are found from any working directory.  Nothing here
imports this package: the files are read by path.
"""
