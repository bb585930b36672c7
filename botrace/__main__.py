import sys

from botrace.cli import main

sys.exit(main())
