"""Run outputs: Argo workflows and artifact tarballs (v1), ML Metadata and the object store (v2).

`archive`, `argo` and `values` are pure; `mlmd` speaks gRPC, `objectstore` S3; `service` puts them together
behind the two routes and the `kfadapter outputs` command.
"""
