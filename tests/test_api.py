import loopml


def test_public_api_is_pinned_and_sorted():
    assert loopml.__all__ == sorted(loopml.__all__)
    assert loopml.__all__ == [
        "ArtifactError", "ConflictError", "DataError", "Decision", "LoopmlError", "MaintainResult", "ModelError",
        "NotFoundError", "ProjectSpec", "Report",
        "RunResult", "SpecError", "Store", "StoreError", "load_spec", "maintain_project", "project_report",
        "run_project",
    ]


def test_every_public_name_resolves():
    for name in loopml.__all__:
        assert getattr(loopml, name) is not None
