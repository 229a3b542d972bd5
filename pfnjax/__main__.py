import sys

from pfnjax.cli import main

sys.exit(main())
