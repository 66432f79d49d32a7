"""DSA-110 continuum survey data platform.

Importing the package prepares the process for CASA (offline measures, log directory,
thread defaults) before anything can import casatools; see :mod:`dsa_assets.casa_env`.
"""

from . import casa_env as _casa_env

_casa_env.configure()
