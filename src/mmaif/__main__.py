import sys

from mmaif.cli import main

sys.exit(main())
