"""The HR application's own tables."""
