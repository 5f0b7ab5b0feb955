import sys

from dasctl.cli import main

sys.exit(main())
