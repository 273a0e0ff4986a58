"""The MLflow registry backend: `registry.MlflowRegistry` behind `base.Registry`, the session
it opens, the tags it writes, the fast readers (sqlite, REST) for everyday commands, and the
artifact checks (ONNX interface, references) done before anything is stored."""
