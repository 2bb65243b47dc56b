"""ctrlgpt on a Kubernetes cluster: manifests rendered from the topic registry, the consumer groups and the settings.

`render` builds every resource as a plain dict (pure functions, no I/O); `cli` is `ctrlgpt kube`, which writes
them as YAML under deploy/kubernetes/manifests/ (committed; tests/deploy/test_kubernetes_manifests.py checks
that they equal a fresh render and validates each against the Kubernetes and the vendored CRD schemas in
deploy/kubernetes/crds/). `pod` holds what runs inside the pods: the secrets file from the mounted Secret and
the workers' health probe. docs/deploy.md tells an operator how to use them.
"""
