"""The exit codes of every ``margin-tune`` command, one table.

=====  ==========================================================================
0      done
1      the command ran, but runs failed: no trial of a sweep completed its budget,
       or a comparison's method has no winner on some split (tables are written)
2      bad input: nothing started, nothing written
130    interrupted by SIGINT (Ctrl-C); ``margin-tune resume DIR`` continues
143    interrupted by SIGTERM; ``margin-tune resume DIR`` continues
=====  ==========================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNS_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
