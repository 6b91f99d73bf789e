import os
import sys

from .cli import main
from .distributed import world

code = main()
if world() > 1:
    # A torchrun process leaves without the interpreter's teardown: a short-lived process group (a finished
    # run's rerun takes a second) could abort there ("terminate called without an active exception" from a
    # gloo thread's destructor, seen under load), after the run itself had ended well.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
