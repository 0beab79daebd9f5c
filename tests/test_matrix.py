"""docs/matrix.yaml reproduces: every fast cell lands within the stated tolerance of its recorded nDCG@10."""

import pytest
from conftest import DATASETS, ROOT

from pipeline.errors import InputError
from pipeline.experiment.matrix import dataset_path, evaluate_cell, load_matrix

MATRIX = ROOT / "docs" / "matrix.yaml"
ROOTS, TOLERANCE, CELLS = load_matrix(MATRIX, DATASETS)


def cell_id(cell):
    settings = "".join(f"-{value}" for value in (cell.dense_settings or {}).values())
    return f"{cell.dataset}-{cell.method}{'' if cell.dense else '-lexical'}{f'-{cell.encoder}' if cell.encoder else ''}{settings}"


def test_the_matrix_states_a_tight_tolerance_and_covers_every_dataset():
    assert TOLERANCE <= 0.01
    assert {c.dataset for c in CELLS} == {"sample", "sample-xling", "scifact", "drcd-zh-tw", "csl-title", "cranfield",
                                          "qbqtc"}
    assert all(c.expected > 0 for c in CELLS)


@pytest.mark.parametrize("cell", [c for c in CELLS if not c.slow], ids=cell_id)
def test_fast_cell_reproduces(cell, settings, shared_datasets):
    summary = evaluate_cell(ROOTS, cell, settings)
    assert summary["ndcg@10"] == pytest.approx(cell.expected, abs=TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("cell", [c for c in CELLS if c.slow], ids=cell_id)
def test_slow_cell_reproduces(cell, shared_datasets, corpus_settings):
    summary = evaluate_cell(ROOTS, cell, corpus_settings)
    assert summary["ndcg@10"] == pytest.approx(cell.expected, abs=TOLERANCE)


def test_a_dataset_missing_from_every_root_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="'nowhere' is in none of"):
        dataset_path([tmp_path], "nowhere")


def test_the_datasets_folder_setting_is_searched_before_the_matrix_roots(tmp_path):
    (tmp_path / "sample").mkdir()
    (tmp_path / "sample" / "corpus.jsonl").write_text("")
    roots, _, _ = load_matrix(MATRIX, tmp_path)
    assert dataset_path(roots, "sample") == tmp_path / "sample"


def test_a_cell_s_dense_settings_reach_its_evaluation(monkeypatch, settings):
    import pipeline.experiment.matrix as matrix

    seen = {}
    monkeypatch.setattr(matrix, "evaluate", lambda *args, **kwargs: seen.setdefault("dense", args[3].dense))
    cell = matrix.MatrixCell("sample", "dense", 0.9, encoder="static", dense_settings={"static_queries": "teacher"})
    evaluate_cell(ROOTS, cell, settings)
    assert seen["dense"].static_queries == "teacher"
