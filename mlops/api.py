"""The one place that wires layers together: plan(), apply(), status(), drift(), ...

The CLI parses arguments and renders; everything it does goes through a function here.
Heavy providers are imported inside functions, so importing this module stays cheap.
"""

from __future__ import annotations
