"""The spec language: `apiVersion: mlops/v1`, `kind: ModelDeployment`."""
