"""A training run: its folder, the trainer and its callbacks, the precision choice, checkpoint IO, the probe step."""
