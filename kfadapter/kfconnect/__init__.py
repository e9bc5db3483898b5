"""KfConnect: the one package that talks to Kubeflow Pipelines, through `kfp.Client`.

`transport` builds the client and makes every call (timeouts, paging, answer caps), `kfp_errors` translates
every failure once, `filters` writes list filters; `pipelines` and `runs` hold the adapter's workflows on top of it. Nothing outside this package imports kfp.
"""

from kfadapter.kfconnect.kfp_errors import translate_api_exception, translate_transport_error
from kfadapter.kfconnect.runs import TERMINAL_STATES, UNFINISHED_TIME, RunCalls
from kfadapter.kfconnect.transport import KfpStream


class KfConnect(RunCalls):
    """Wrap `kfp.Client` with timeouts, paging, error translation and the adapter's KFP workflows."""


__all__ = [
    "TERMINAL_STATES",
    "UNFINISHED_TIME",
    "KfConnect",
    "KfpStream",
    "translate_api_exception",
    "translate_transport_error",
]
