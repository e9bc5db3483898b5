"""KfConnect's experiments: list, find by name, and the `Default` experiment multi-user KFP does not have."""

from __future__ import annotations

from kfadapter.core.errors import Conflict, NotFound
from kfadapter.kfconnect.filters import equals_filter
from kfadapter.kfconnect.scope import ScopedCalls

DEFAULT_EXPERIMENT = "Default"


class ExperimentCalls(ScopedCalls):
    """Experiments of KFADAPTER_NAMESPACE."""

    def list_experiments(self) -> list[dict]:
        """Return every experiment."""
        api = self.client._experiment_api
        return self._list_shared(
            api.experiment_service_list_experiments, "experiments", namespace=self._namespace, what="list experiments"
        )

    def find_experiment(self, name: str) -> dict:
        """Return the experiment with this display name (exactly; KFP's filter ignores case)."""
        api = self.client._experiment_api
        page = self._call(
            api.experiment_service_list_experiments,
            namespace=self._namespace,
            page_size=1,
            filter=equals_filter("display_name", name),
            what=f"experiment {name!r}",
        )
        for exp in page.get("experiments") or []:
            if exp.get("display_name") == name:
                return exp
        raise NotFound(f"experiment {name!r} not found", code="experiment_not_found", details={"experiment_name": name})

    def default_experiment(self) -> dict:
        """Return the experiment `Default` of the namespace, creating it once when missing.

        Single-user KFP always has it; multi-user KFP has none, so the first execution creates it in
        KFADAPTER_NAMESPACE. Concurrent creators race on KFP's 409: the loser reads the winner's."""
        try:
            return self.find_experiment(DEFAULT_EXPERIMENT)
        except NotFound:
            pass
        api = self.client._experiment_api
        body = {
            "display_name": DEFAULT_EXPERIMENT,
            "description": "Runs started without an experiment name.",
            "namespace": self.settings.namespace,
        }
        try:
            return self._call(api.experiment_service_create_experiment, body, what="create experiment 'Default'")
        except Conflict:
            return self.find_experiment(DEFAULT_EXPERIMENT)
