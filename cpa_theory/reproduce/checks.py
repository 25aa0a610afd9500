"""Index of the claim checks, split by claim family (kept so that older imports keep working):
``checks_bn`` (C1–C3), ``checks_window`` (C4, C8), ``checks_refinement`` (C5–C7), ``checks_depth`` (C9); the
independent textbook oracles are in ``oracles_textbook``."""

from .checks_bn import check_c1, check_c2, check_c3
from .checks_depth import check_c9, pullback_instance
from .checks_refinement import check_c5, check_c6, check_c7, generic_normals
from .checks_window import check_c4, check_c8

__all__ = ["check_c1", "check_c2", "check_c3", "check_c4", "check_c5", "check_c6", "check_c7", "check_c8",
           "check_c9", "pullback_instance", "generic_normals"]
