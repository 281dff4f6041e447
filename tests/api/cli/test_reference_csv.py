"""The reference's CSV configs (test copies in its format) mapped onto an ExperimentConfig, field by field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from evoprune.api.cli._reference_csv import (
    DATASET_COLUMNS,
    ReferenceCsvError,
    load_reference_config,
    ood_csv_files,
    read_csv_lines,
)
from evoprune.shared.config import ConfigError, EarlyStoppingConfig, RobustnessConfig, TrainingConfig

COPIES = Path(__file__).parent / "reference_csv"
PAPER_GA = "30,first,2048,512,-1,200,0,1,1,0\n"
OOD_FILES = {
    "configDatasetCorales.csv": ("SRSMAS-OOD", "/data/cfp/dataood/corales"),
    "configDatasetLeaves.csv": ("LEAVES-OOD", "/data/cfp/dataood/leaves"),
    "configDatasetPinturasFull.csv": ("PINTURAS-OOD", "/data/cfp/dataood/painting"),
    "configDatasetRPS.csv": ("RPS-OOD", "/data/cfp/dataood/rps"),
    "configDatasetOjos.csv": ("OJOS-OOD", "/data/cfp/dataood/cataract"),
    "configDatasetPlantas.csv": ("PLANTAS-OOD", "/data/cfp/dataood/plants"),
}


@pytest.fixture
def copies(tmp_path: Path) -> Path:
    """A writable copy of the reference-format files."""
    folder = tmp_path / "configs"
    shutil.copytree(COPIES, folder)
    return folder


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("file", "name", "source", "folds", "size", "classes"),
    [
        ("configDatasetRPS.csv", "RPS", "folder:/data/cfp/data/rps", None, (300, 300), 3),
        ("configDatasetCorales.csv", "SRSMAS", "folder:/data/cfp/data/corales/test", 5, (299, 299), 14),
        ("configDatasetLeaves.csv", "LEAVES", "folder:/data/cfp/data/leaves/test", 5, (256, 256), 4),
        (
            "configDatasetPinturasFull.csv",
            "PINTURASFULLFIRST",
            "folder:/data/cfp/data/painting",
            None,
            (256, 256),
            5,
        ),
        ("configDatasetPlantas.csv", "PLANTAS", "folder:/data/cfp/data/plants", None, (100, 100), 27),
        ("configDatasetOjos.csv", "OJOS", "folder:/data/cfp/data/cataract", None, (256, 256), 4),
    ],
)
def test_each_paper_dataset_file_maps_field_by_field(file, name, source, folds, size, classes):
    config = load_reference_config(COPIES / file, COPIES / "configGAFS.csv", run=3)
    assert config.name == f"{name}-run3"
    assert config.dataset.name == name
    assert config.dataset.source == source
    assert config.dataset.folds == folds
    assert config.dataset.image_size == size
    assert config.dataset.num_classes == classes
    # the OoD sets: every other dataset's OOD file, in the reference's order
    expected_ood = [OOD_FILES[other] for other in OOD_FILES if other != file]
    assert [(ood.name, ood.source) for ood in config.ood] == [
        (label, f"folder:{folder}") for label, folder in expected_ood
    ]
    # the GA line 30,first,2048,512,-1,200,0,1,1,0
    assert config.head.mode == "features"
    assert config.head.layers == (512,)
    assert config.head.masked == (0,)
    assert config.head.hidden_bias is False
    assert config.head.mask_length(2048) == 2048
    assert config.search.population_size == 30
    assert config.search.max_evaluations == 200
    assert config.search.offspring_per_step == 2
    assert (config.search.runs, config.search.seed) == (1, 3)
    # the protocol the reference hard-codes
    assert config.backbone.name == "resnet50" and config.backbone.weights == "imagenet"
    assert config.fitness_split == "test"
    # and its AUROC estimator, OoD sample and restore rule, through protocol: reference
    assert config.protocol == "reference"
    assert config.training == TrainingConfig(
        early_stopping=EarlyStoppingConfig(restore_best_weights="when_stopped", decision="keras2_float64"),
        loss="keras2_clipped",
    )
    assert config.robustness == RobustnessConfig(
        auroc_estimator="reference", ood_sampling="first_n", score_precision="float32"
    )
    assert (config.dataset.resize, config.search.bookkeeping) == ("nearest", "jmetalpy")


def test_run_number_and_base_seed_make_the_seed():
    config = load_reference_config(
        COPIES / "configDatasetRPS.csv", COPIES / "configGAFS.csv", 7, base_seed=100
    )
    assert (config.search.seed, config.search.runs, config.name) == (107, 1, "RPS-run7")


@pytest.mark.parametrize(
    ("line", "mode", "layers", "masked", "mask_length"),
    [
        ("30,second,2048,512,-1,200,0,1,1,0", "neurons", (512,), (0,), 512),
        ("30,second,2048,512,256,200,0,2,1,0", "neurons", (512, 256), (0,), 512),
        ("30,second,2048,512,256,200,0,2,2,0", "neurons", (512, 256), (1,), 256),
        ("30,second,2048,512,256,200,0,2,2,1", "neurons", (512, 256), (0, 1), 768),
        ("30,first,2048,512,256,200,0,2,1,0", "features", (512, 256), (0,), 2048),
        ("20,FIRST,2048,128,0.07,40,neurons,1,1,0", "features", (128,), (0,), 2048),
    ],
)
def test_ga_variants(copies, line, mode, layers, masked, mask_length):
    ga = write(copies / "configGA.csv", line + "\n")
    config = load_reference_config(copies / "configDatasetRPS.csv", ga, 0)
    assert (config.head.mode, config.head.layers, config.head.masked) == (mode, layers, masked)
    assert config.head.mask_length(2048) == mask_length


@pytest.mark.parametrize(
    ("extractor", "input_size", "backbone", "weights"),
    [
        ("densenet", 1024, "densenet121", "imagenet"),
        ("vgg19", 512, "vgg19", "imagenet"),
        ("pixels", 300 * 300 * 3, "pixels", None),
        ("efficientnetb0", 1280, "efficientnetb0", "imagenet"),
    ],
)
def test_extractors(copies, extractor, input_size, backbone, weights):
    ga = write(copies / "configGA.csv", f"30,first,{input_size},512,-1,200,0,1,1,0\n")
    config = load_reference_config(copies / "configDatasetRPS.csv", ga, 0, extractor=extractor)
    assert (config.backbone.name, config.backbone.weights) == (backbone, weights)


def test_headers_comments_blank_lines_spaces_bom_and_trailing_commas_are_accepted(copies):
    dataset = write(
        copies / "configDatasetRPS.csv",
        "\ufeffname,train dir,test dir,folds,height,width,classes\n"
        "# the RPS dataset\n\n"
        " RPS , /data/cfp/data/rps/train , /data/cfp/data/rps/test/ , 1 , 300 , 300 , 3 ,\n",
    )
    ga = write(
        copies / "configGA.csv",
        "population,first|second,input size,first layer,second layer,evaluations,neurons|connections,"
        "layer count,which sparse,both\n" + PAPER_GA,
    )
    config = load_reference_config(dataset, ga, 0)
    reference = load_reference_config(COPIES / "configDatasetRPS.csv", COPIES / "configGAFS.csv", 0)
    assert config == reference


def test_an_ood_file_may_list_several_sets(copies):
    write(copies / "configDatasetExtraOOD.csv", "A,/o/a,-,1,8,8,2\nB,/o/b/,-,1,8,8,3\n")
    config = load_reference_config(copies / "configDatasetRPS.csv", copies / "configGAFS.csv", 0)
    assert [ood.name for ood in config.ood][-2:] == ["A", "B"]
    assert config.ood[-1].source == "folder:/o/b"


def test_ood_files_come_in_the_reference_order_then_by_name(tmp_path):
    for name in (
        "configDatasetZOOD.csv",
        "configDatasetRPSOOD.csv",
        "configDatasetAOOD.csv",
        "configDatasetCoralesOOD.csv",
        "configDatasetXOOD.csv",
        "other.csv",
    ):
        write(tmp_path / name, "")
    found = [path.name for path in ood_csv_files(tmp_path / "configDatasetX.csv")]
    assert found == [
        "configDatasetCoralesOOD.csv",
        "configDatasetRPSOOD.csv",
        "configDatasetAOOD.csv",
        "configDatasetZOOD.csv",
    ]


def test_relative_folders_start_at_the_working_directory(copies, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dataset = write(copies / "configDatasetRPS.csv", "RPS,data/rps/train,./data/rps/test,1,300,300,3\n")
    write(copies / "configDatasetRPSOOD.csv", "")
    config = load_reference_config(dataset, copies / "configGAFS.csv", 0)
    assert config.dataset.source == f"folder:{tmp_path}/data/rps"


def test_a_dataset_without_test_folder_trains_on_all_and_holds_out_a_share(copies):
    dataset = write(copies / "configDatasetRPS.csv", "RPS,/data/rps/,-,1,300,300,3\n")
    config = load_reference_config(dataset, copies / "configGAFS.csv", 0)
    assert config.dataset.source == "folder:/data/rps"


def _partitions(root: Path, side: str, folds: dict[int, list[str]]) -> None:
    for index, files in folds.items():
        for relative in files:
            path = root / side / f"partition{index}" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")


def test_train_partitions_that_are_the_other_test_partitions_pass(copies, tmp_path):
    tests = {0: ["a/1.png", "b/2.png"], 1: ["a/3.png"], 2: ["b/4.png"]}
    _partitions(tmp_path, "test", tests)
    _partitions(
        tmp_path,
        "train",
        {
            0: ["a/3.png", "b/4.png"],
            1: ["a/1.png", "b/2.png", "b/4.png"],
            2: ["a/1.png", "b/2.png", "a/3.png"],
        },
    )
    dataset = write(
        copies / "configDatasetCorales.csv",
        f"SRSMAS,{tmp_path}/train/partition,{tmp_path}/test/partition,3,299,299,14\n",
    )
    config = load_reference_config(dataset, copies / "configGAFS.csv", 0)
    assert (config.dataset.source, config.dataset.folds) == (f"folder:{tmp_path}/test", 3)


def test_train_partitions_that_differ_are_named(copies, tmp_path):
    _partitions(tmp_path, "test", {0: ["a/1.png"], 1: ["a/2.png"]})
    _partitions(tmp_path, "train", {0: ["a/2.png"], 1: ["a/1.png", "a/extra.png"]})
    dataset = write(
        copies / "configDatasetCorales.csv",
        f"SRSMAS,{tmp_path}/train/partition,{tmp_path}/test/partition,2,299,299,14\n",
    )
    with pytest.raises(ReferenceCsvError) as caught:
        load_reference_config(dataset, copies / "configGAFS.csv", 0)
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert f"{dataset} line 1, column 2 (train dir): {tmp_path}/train/partition1 is not" in problem
    assert "0 files missing, 1 extra, e.g. 'a/extra.png'" in problem


BAD_DATASETS = [
    ("RPS,/d/train,/d/test,1,300,300\n", "line 1: has 6 columns, expected 7: name, train dir"),
    ("RPS,/d/train,/d/test,1,300,300,three\n", "line 1, column 7 (classes): must be an integer, got 'three'"),
    ("RPS,/d/train,/d/test,1,300,300,1\n", "line 1, column 7 (classes): must be at least 2, got 1"),
    ("RPS,/d/train,/d/test,0,300,300,3\n", "line 1, column 4 (folds): must be at least 1, got 0"),
    ("RPS,/d/train,/d/test,1,-5,300,3\n", "line 1, column 5 (height): must be at least 1"),
    ("RPS,-,/d/test,1,300,300,3\n", "line 1, column 2 (train dir): the training images are needed"),
    ("a/b,/d/train,/d/test,1,300,300,3\n", "line 1, column 1 (name): must be a non-empty name"),
    ("RPS,/d/training,/d/testing,1,300,300,3\n", "column 2 (train dir) and column 3 (test dir)"),
    ("RPS,/a/train,/b/test,1,300,300,3\n", "place or symlink them as ROOT/train and ROOT/test"),
    ("C,/d/train/partition,-,5,299,299,14\n", "column 3 (test dir): a dataset with 5 folds needs its test"),
    ("C,/d/train/partition,/d/test/partition/,5,299,299,14\n", "the test dir must end in /partition"),
    ("C,/d/train/fold,/d/test/fold,5,299,299,14\n", "must be folders partition0..partition4"),
    ("", "expected one dataset line, found none"),
    ("name,train,test,folds,height,width,classes\n", "expected one dataset line, found none"),
    ("R,/d/train,/d/test,1,3,3,3\nS,/d/train,/d/test,1,3,3,3\n", "found 2 (lines 1, 2)"),
]


@pytest.mark.parametrize(("text", "message"), BAD_DATASETS)
def test_bad_dataset_files_are_named(copies, text, message):
    dataset = write(copies / "configDatasetRPS.csv", text)
    with pytest.raises(ReferenceCsvError) as caught:
        load_reference_config(dataset, copies / "configGAFS.csv", 0)
    assert message in str(caught.value)
    assert str(dataset) in str(caught.value)


BAD_GA = [
    ("30,first,2048,512,-1,200,1,1,1,0", "column 7 (neurons|connections): pruning single connections"),
    ("30,first,2048,512,-1,200,connections,1,1,0", "column 7 (neurons|connections): pruning single"),
    ("30,first,2048,512,-1,200,0,1,3,0", "column 9 (which sparse): must be one of 1, 2, got '3'"),
    (
        "30,first,2048,512,-1,200,0,3,1,0",
        "column 8 (layer count): is 3 but a GA line sizes at most 2 hidden layers",
    ),
    ("30,first,2048,512,-1,200,0,1,2,0", "column 9 (which sparse): layer 2 is sparse but the head has 1"),
    ("30,second,2048,512,-1,200,0,1,1,1", "column 10 (both): both layers sparse needs a layer count of 2"),
    ("30,second,2048,512,-1,200,0,2,1,0", "column 5 (second layer): must be at least 1, got -1"),
    ("30,third,2048,512,-1,200,0,1,1,0", "column 2 (first|second): must be one of first, second"),
    (
        "30,first,1024,512,-1,200,0,1,1,0",
        "column 3 (input size): is 1024 but the resnet50 extractor gives 2048",
    ),
    ("30,first,2048,0,-1,200,0,1,1,0", "column 4 (first layer): must be at least 1, got 0"),
    ("1,first,2048,512,-1,200,0,1,1,0", "column 1 (population): search.population_size: Input should be"),
    ("50,first,2048,512,-1,20,0,1,1,0", "column 1 (population): search: population_size (50) is larger"),
    ("30,first,2048,512,-1,0,0,1,1,0", "column 6 (evaluations): search.max_evaluations"),
    ("30,first,2048,512,-1,200,0,0,1,0", "column 8 (layer count): must be at least 1, got 0"),
    ("30,first,2048,512,-1,200,0,1,1", "line 1: has 9 columns, expected 10"),
    ("30,first,2048,512,-1,200,0,1,1,0\n30,first,2048,512,-1,200,0,1,1,0", "expected one GA line, found 2"),
]


@pytest.mark.parametrize(("text", "message"), BAD_GA)
def test_bad_ga_files_are_named(copies, text, message):
    ga = write(copies / "configGA.csv", text + "\n")
    with pytest.raises(ReferenceCsvError) as caught:
        load_reference_config(copies / "configDatasetRPS.csv", ga, 0)
    assert message in str(caught.value)
    assert str(ga) in str(caught.value)


def test_bad_ood_files_are_named(copies):
    write(copies / "configDatasetPlantasOOD.csv", "PLANTAS-OOD,-,-,1,100,100,27\n")
    write(copies / "configDatasetOjosOOD.csv", "OJOS-OOD,/o,-,1,256\n")
    with pytest.raises(ReferenceCsvError) as caught:
        load_reference_config(copies / "configDatasetRPS.csv", copies / "configGAFS.csv", 0)
    assert "configDatasetOjosOOD.csv line 1: has 5 columns, expected 7" in str(caught.value)
    write(copies / "configDatasetOjosOOD.csv", "")
    with pytest.raises(ReferenceCsvError) as caught:
        load_reference_config(copies / "configDatasetRPS.csv", copies / "configGAFS.csv", 0)
    assert caught.value.problems == [
        f"{copies}/configDatasetOjosOOD.csv: holds no OoD line",
        f"{copies}/configDatasetPlantasOOD.csv line 1, column 2 (train dir): the OoD images' folder is "
        "needed, got '-'",
    ]


def test_a_dataset_without_ood_siblings_is_refused(tmp_path):
    dataset = write(tmp_path / "configDatasetRPS.csv", "RPS,/d/train,/d/test,1,300,300,3\n")
    write(tmp_path / "configDatasetRPSOOD.csv", "RPS-OOD,/o/rps,-,1,300,300,3\n")
    with pytest.raises(ReferenceCsvError, match="no OoD files beside it"):
        load_reference_config(dataset, COPIES / "configGAFS.csv", 0)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ReferenceCsvError, match=r"nothing\.csv: cannot read the file: No such file"):
        load_reference_config(tmp_path / "nothing.csv", COPIES / "configGAFS.csv", 0)
    binary = tmp_path / "configGA.csv"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ReferenceCsvError, match="cannot read the file: not UTF-8 text"):
        load_reference_config(COPIES / "configDatasetRPS.csv", binary, 0)


def test_reference_errors_are_config_errors():
    # callers that catch ConfigError (run, validate, the API) handle CSV problems too
    assert issubclass(ReferenceCsvError, ConfigError)


def test_read_csv_lines_keeps_line_numbers(tmp_path):
    path = write(tmp_path / "x.csv", "# note\n\nA,/t,/s,1,2,2,2\n")
    (line,) = read_csv_lines(path, DATASET_COLUMNS, (3, 4, 5, 6))
    assert (line.number, line.fields[0]) == (3, "A")
    assert line.where(6) == f"{path} line 3, column 7 (classes)"
