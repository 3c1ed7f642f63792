"""The HR application's URLs."""

urlpatterns: list[object] = []
