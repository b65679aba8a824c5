"""Ray Data stages shared by the scoring and preprocessing jobs: plan, decode, faces."""
