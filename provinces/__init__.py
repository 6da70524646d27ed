"""The tenant layer: the rollout table and the applicant pages registered once per province."""
