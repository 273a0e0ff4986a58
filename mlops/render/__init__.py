"""Views of a plan: text (Terraform-like), JSON (stable, documented), markdown (PR comment)."""
