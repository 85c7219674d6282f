"""ONNX copies of exported models, for ONNX Runtime (``--runtime onnxruntime``).

The ONNX model is the *network* of a contract SavedModel, on decoded tensors;
decoding stays outside it (ONNX has no PNG or JPEG decoder):

* **classifier**: the SavedModel's ``serving_default`` is frozen and cut at
  the batch of decoded images (the ``map_fn`` that decodes, resizes and
  fills masked pixels ends in one ``TensorListStack`` of float32
  ``[N, S, S, 3]``) and at the calibrated scores (what the final ``where``
  keeps for decodable records). The part above the cut (parse, decode) is
  what the pipeline runs in TensorFlow before the ONNX model; the part
  below it (the network and the Platt calibration) becomes the ONNX model
  with input ``images`` and output ``score``. Cutting the saved graph,
  rather than rebuilding from Keras, makes this work for any SavedModel
  :mod:`model_training.export` wrote, old ones included (the Keras object
  inside a SavedModel cannot be called after loading).
* **segmenter**: the whole signature (``images`` uint8 -> ``mask``) converts
  as it is, padding included.

The file is ``<model>/model.onnx`` (:data:`footprints.contracts.ONNX_MODEL`)
and says which graph it was cut from in its metadata
(:data:`footprints.contracts.ONNX_DECODE_KEYS`), so the pipeline can rebuild
exactly the SavedModel's decoding. ``tf2onnx`` does the conversion; it is an
optional dependency (``pip install footprints[onnx]``).
"""

from __future__ import annotations

import json
import os

import numpy as np

from footprints import contracts
from footprints.errors import ConfigError, ContractError

#: The ONNX opset written (ONNX Runtime 1.17+ runs it; tf2onnx's well-tested range).
OPSET = 17
#: Largest |ONNX - SavedModel| accepted when a conversion is checked: classifier scores.
SCORE_TOLERANCE = 1e-5
#: ... and segmenter mask probabilities (the pipeline writes masks in steps of 1/255).
MASK_TOLERANCE = 1.0 / 255.0
#: Seeded inputs the check runs on.
CHECK_BATCH = 8


def _require_tf2onnx():
    try:
        import onnx
        import tf2onnx
    except ImportError as exc:  # pragma: no cover - the test extras install both
        raise ConfigError(
            f"converting to ONNX needs tf2onnx and onnx ({exc}); install them with "
            "`pip install -e .[onnx]`"
        ) from exc
    return tf2onnx, onnx


def _frozen_signature(model_dir: str):
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    loaded = tf.saved_model.load(contracts.local_model_dir(model_dir))
    if contracts.SIGNATURE not in loaded.signatures:
        raise ContractError(f"{model_dir!r} has no {contracts.SIGNATURE!r} signature to convert")
    return convert_variables_to_constants_v2(loaded.signatures[contracts.SIGNATURE])


def classifier_cut(graph) -> tuple[str, str, str]:
    """Where a classifier's frozen graph splits into decoding and the network.

    Returns:
        ``(images, valid, scores)`` tensor names: the decoded float32 image
        batch, the bool "record decodable" vector and the scores of the
        decodable records (before NaN is put in for the others).

    Raises:
        ContractError: if the graph is not shaped like an exported classifier.
    """
    stacks = [
        op.outputs[0]
        for op in graph.get_operations()
        if op.type == "TensorListStack"
        and op.outputs[0].dtype.name == "float32"
        and op.outputs[0].shape.rank == 4
    ]
    outputs = [t for t in graph.outputs if t.dtype.name == "float32"]
    select = outputs[0].op if outputs else None
    while select is not None and select.type == "Identity":
        select = select.inputs[0].op
    if len(stacks) != 1 or select is None or select.type not in ("SelectV2", "Select"):
        raise ContractError(
            "this SavedModel's serving_default is not shaped like a classifier written by "
            "`footprints train classifier` (one decoded image batch, scores chosen per record); "
            "export the Keras model with model_training.export.export_classifier first"
        )
    return stacks[0].name, select.inputs[0].name, select.inputs[1].name


def _cut_graph_def(graph, images: str, scores: str):
    """The frozen GraphDef from ``images`` (made a placeholder) to ``scores``."""
    import tensorflow as tf

    graph_def = graph.as_graph_def()
    cut = images.split(":")[0]
    shape = graph.get_tensor_by_name(images).shape
    for node in graph_def.node:
        if node.name == cut:
            node.Clear()
            node.name = cut
            node.op = "Placeholder"
            node.attr["dtype"].type = tf.float32.as_datatype_enum
            node.attr["shape"].shape.CopyFrom(shape.as_proto())
    return _without_log1p(
        tf.compat.v1.graph_util.extract_sub_graph(graph_def, [scores.split(":")[0]])
    )


def _without_log1p(graph_def):
    """``Log1p(x)`` rewritten as ``Log(1 + x)``: ONNX has no Log1p (the Platt step uses it).

    In float64, as the calibration runs, the two differ by about 1e-16 for
    the clipped probabilities it sees.
    """
    import tensorflow as tf

    nodes = []
    for node in graph_def.node:
        if node.op != "Log1p":
            nodes.append(node)
            continue
        dtype = tf.dtypes.as_dtype(node.attr["T"].type)
        one = tf.compat.v1.NodeDef(name=node.name + "/one", op="Const")
        one.attr["dtype"].type = dtype.as_datatype_enum
        one.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(1.0, dtype=dtype))
        add = tf.compat.v1.NodeDef(name=node.name + "/plus_one", op="AddV2")
        add.input.extend([node.input[0], one.name])
        add.attr["T"].type = dtype.as_datatype_enum
        log = tf.compat.v1.NodeDef(name=node.name, op="Log", input=[add.name])
        log.attr["T"].type = dtype.as_datatype_enum
        nodes += [one, add, log]
    del graph_def.node[:]
    graph_def.node.extend(nodes)
    return graph_def


def _rename_io(model, input_name: str, output_name: str) -> None:
    """Renames the single graph input and output to the contract's names."""
    graph = model.graph
    old_in, old_out = graph.input[0].name, graph.output[0].name
    for node in graph.node:
        node.input[:] = [input_name if i == old_in else i for i in node.input]
        node.output[:] = [output_name if o == old_out else o for o in node.output]
    graph.input[0].name = input_name
    graph.output[0].name = output_name


def convert_classifier(model_dir: str, onnx_path: str | None = None) -> str:
    """Writes the ONNX copy of a classifier SavedModel's network; returns its path.

    The ONNX model maps ``images`` (float32 ``[N, S, S, 3]``, the decoded
    0..255 chips) to ``score`` (float32 ``[N]``, calibrated).
    """
    tf2onnx, onnx = _require_tf2onnx()
    frozen = _frozen_signature(model_dir)
    images, valid, scores = classifier_cut(frozen.graph)
    graph_def = _cut_graph_def(frozen.graph, images, scores)
    model, _ = tf2onnx.convert.from_graph_def(
        graph_def, input_names=[images], output_names=[scores], opset=OPSET
    )
    _rename_io(model, contracts.ONNX_IMAGES, contracts.CLASSIFIER_OUTPUT)
    size = frozen.graph.get_tensor_by_name(images).shape[1]
    meta = {
        "kind": "classifier",
        "contract_version": str(contracts.CONTRACT_VERSION),
        contracts.ONNX_DECODE_KEYS[0]: images,
        contracts.ONNX_DECODE_KEYS[1]: valid,
        "image_size": str(size),
    }
    path = _write(onnx, model, meta, model_dir, onnx_path)
    _write_decode_graph(frozen.graph, (images, valid), os.path.dirname(path))
    return path


def _write_decode_graph(graph, outputs: tuple[str, str], folder: str) -> str:
    """Writes the frozen decoding (``examples`` to ``outputs``) as ``model.decode.pb``."""
    import tensorflow as tf

    graph_def = tf.compat.v1.graph_util.extract_sub_graph(
        graph.as_graph_def(), [name.split(":")[0] for name in outputs]
    )
    path = os.path.join(folder, contracts.ONNX_DECODE_GRAPH)
    with open(path + ".tmp", "wb") as f:
        f.write(graph_def.SerializeToString())
    os.replace(path + ".tmp", path)
    return path


def _explicit_same_pads(model) -> None:
    """Stride-1 ``SAME`` convolutions get explicit pads.

    tf2onnx writes ``auto_pad=SAME_UPPER`` when the image size is unknown,
    and ONNX Runtime refuses that for dilated convolutions. With stride 1 the
    padding does not depend on the image size: ``dilation * (kernel - 1)``
    per axis, the odd pixel after (as TensorFlow's ``SAME``).
    """
    from onnx import helper, numpy_helper

    weights = {init.name: numpy_helper.to_array(init).shape for init in model.graph.initializer}
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Conv" or attrs.get("auto_pad") not in (b"SAME_UPPER", "SAME_UPPER"):
            continue
        kernel = attrs.get("kernel_shape") or weights.get(node.input[1], (0, 0))[2:]
        if not kernel or any(s != 1 for s in attrs.get("strides", [1] * len(kernel))):
            continue
        dilations = attrs.get("dilations", [1] * len(kernel))
        total = [d * (k - 1) for d, k in zip(dilations, kernel, strict=True)]
        begin, end = [t // 2 for t in total], [t - t // 2 for t in total]
        kept = [a for a in node.attribute if a.name != "auto_pad"]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.append(helper.make_attribute("pads", begin + end))


def convert_segmenter(model_dir: str, onnx_path: str | None = None) -> str:
    """Writes the ONNX copy of a segmenter SavedModel (``images`` uint8 -> ``mask``)."""
    tf2onnx, onnx = _require_tf2onnx()
    frozen = _frozen_signature(model_dir)
    graph_def = frozen.graph.as_graph_def()
    inputs = [t.name for t in frozen.inputs if t.dtype.name == "uint8"]
    outputs = [t.name for t in frozen.outputs]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ContractError(
            f"{model_dir!r}: a segmenter takes one uint8 input and returns one mask; its "
            f"signature has inputs {inputs} and outputs {outputs}"
        )
    model, _ = tf2onnx.convert.from_graph_def(
        graph_def, input_names=inputs, output_names=outputs, opset=OPSET
    )
    _rename_io(model, contracts.SEGMENTER_INPUT, contracts.SEGMENTER_OUTPUT)
    _explicit_same_pads(model)
    meta = {"kind": "segmenter", "contract_version": str(contracts.CONTRACT_VERSION)}
    return _write(onnx, model, meta, model_dir, onnx_path)


def _write(onnx, model, meta: dict[str, str], model_dir: str, onnx_path: str | None) -> str:
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    path = onnx_path or os.path.join(model_dir, contracts.ONNX_MODEL)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(model.SerializeToString())
    os.replace(tmp, path)
    return path


def is_segmenter(model_dir: str) -> bool:
    """Segmenters carry ``assets/segmenter.json``; classifiers do not."""
    local = contracts.local_model_dir(model_dir)
    return os.path.exists(os.path.join(local, "assets", contracts.SEGMENTER_ASSETS))


def convert(model_dir: str, onnx_path: str | None = None) -> str:
    """Converts a classifier or segmenter SavedModel (told apart by its assets)."""
    if is_segmenter(model_dir):
        return convert_segmenter(model_dir, onnx_path)
    return convert_classifier(model_dir, onnx_path)


def check_conversion(model_dir: str, onnx_path: str, seed: int = 0) -> float:
    """Largest |ONNX - SavedModel| on seeded inputs; raises if above the tolerance.

    Classifier: random 0..255 images at the model's size, through the
    SavedModel's network (the frozen signature from the decoded images on)
    and the ONNX model. Segmenter: random uint8 windows of the assets'
    window size through both whole models.

    Raises:
        ContractError: when the ONNX model's answers differ by more than
            :data:`SCORE_TOLERANCE` (classifier) or :data:`MASK_TOLERANCE`.
    """
    import onnxruntime as ort
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    frozen = _frozen_signature(model_dir)
    if is_segmenter(model_dir):
        assets = contracts.read_segmenter_assets(model_dir)
        shape = (CHECK_BATCH, assets.window_size, assets.window_size, assets.band_count)
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        (want,) = frozen(tf.constant(images))
        (got,) = session.run(None, {contracts.SEGMENTER_INPUT: images})
        tolerance = MASK_TOLERANCE
    else:
        cut, _, scores = classifier_cut(frozen.graph)
        size = frozen.graph.get_tensor_by_name(cut).shape[1]
        images = rng.uniform(0, 255, (CHECK_BATCH, size, size, 3)).astype(np.float32)
        network = frozen.prune(
            frozen.graph.get_tensor_by_name(cut), frozen.graph.get_tensor_by_name(scores)
        )
        want = network(tf.constant(images))
        (got,) = session.run(None, {contracts.ONNX_IMAGES: images})
        tolerance = SCORE_TOLERANCE
    want = np.asarray(want, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if want.shape != got.shape:
        raise ContractError(
            f"{onnx_path!r} answers in shape {got.shape} where the SavedModel answers "
            f"{want.shape}; the conversion is wrong, serve {model_dir!r} with --runtime tensorflow"
        )
    diff = float(np.max(np.abs(want - got))) if want.size else 0.0
    if not diff <= tolerance:
        raise ContractError(
            f"{onnx_path!r} differs from the SavedModel by {diff:.3g} (more than {tolerance:.3g}) "
            f"on seeded inputs; serve {model_dir!r} with --runtime tensorflow"
        )
    return diff


def export_beside(model_dir: str) -> dict:
    """Writes and checks ``<model_dir>/model.onnx``; returns the model card's ``onnx`` entry."""
    import onnx
    import tf2onnx

    path = convert(model_dir)
    diff = check_conversion(model_dir, path)
    return {
        "file": os.path.relpath(path, model_dir),
        "opset": OPSET,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "max_difference": diff,
        "tolerance": MASK_TOLERANCE if is_segmenter(model_dir) else SCORE_TOLERANCE,
    }


def update_card(model_dir: str, entry: dict) -> str:
    """Merges ``entry`` into the model card's ``onnx`` key; returns the card's path.

    A model without a card (one exported by hand) gets a card holding only ``onnx``,
    so the int8 verdict has a place to live.
    """
    assets = os.path.join(model_dir, "assets")
    card = os.path.join(assets, contracts.MODEL_CARD)
    data = {}
    if os.path.exists(card):
        with open(card, encoding="utf-8") as f:
            data = json.load(f)
    os.makedirs(assets, exist_ok=True)
    data["onnx"] = {**data.get("onnx", {}), **entry}
    with open(card + ".tmp", "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=_json_default)
    os.replace(card + ".tmp", card)
    return card


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
