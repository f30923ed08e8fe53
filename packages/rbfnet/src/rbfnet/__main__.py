"""``python -m rbfnet``."""

from .cli import main

raise SystemExit(main())
