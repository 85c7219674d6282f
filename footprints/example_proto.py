"""``tf.train.Example`` as protobuf messages, without importing TensorFlow.

A chip record is a serialized ``tf.train.Example``. TensorFlow ships the
generated classes (``tensorflow.core.example.example_pb2``), but importing
them loads all of TensorFlow: seconds to tens of seconds per process, paid by
every ``prepare`` worker that only writes records. This module declares the
same messages (``tensorflow/core/example/{feature,example}.proto``: the same
names, field numbers and types) in a private descriptor pool and lets the
protobuf runtime build the classes, so the records it writes and reads are
the very bytes TensorFlow's classes write and read (a test compares them).

Only the messages a chip record uses are declared: ``BytesList``,
``FloatList``, ``Int64List``, ``Feature``, ``Features`` and ``Example``.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _file() -> descriptor_pb2.FileDescriptorProto:
    """The two TensorFlow .proto files as one proto3 file descriptor."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="footprints/example.proto", package="tensorflow", syntax="proto3"
    )

    def message(
        name: str, *fields: tuple[str, int, int, int, str]
    ) -> descriptor_pb2.DescriptorProto:
        msg = proto.message_type.add(name=name)
        for field_name, number, label, kind, type_name in fields:
            field = msg.field.add(name=field_name, number=number, label=label, type=kind)
            if type_name:
                field.type_name = type_name
        return msg

    rep, opt = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
    message("BytesList", ("value", 1, rep, _F.TYPE_BYTES, ""))
    message("FloatList", ("value", 1, rep, _F.TYPE_FLOAT, ""))  # packed: proto3's default
    message("Int64List", ("value", 1, rep, _F.TYPE_INT64, ""))
    feature = message(
        "Feature",
        ("bytes_list", 1, opt, _F.TYPE_MESSAGE, ".tensorflow.BytesList"),
        ("float_list", 2, opt, _F.TYPE_MESSAGE, ".tensorflow.FloatList"),
        ("int64_list", 3, opt, _F.TYPE_MESSAGE, ".tensorflow.Int64List"),
    )
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    features = message(
        "Features", ("feature", 1, rep, _F.TYPE_MESSAGE, ".tensorflow.Features.FeatureEntry")
    )
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=opt, type=_F.TYPE_STRING)
    entry.field.add(
        name="value", number=2, label=opt, type=_F.TYPE_MESSAGE, type_name=".tensorflow.Feature"
    )
    message("Example", ("features", 1, opt, _F.TYPE_MESSAGE, ".tensorflow.Features"))
    return proto


# A pool of its own: TensorFlow registers the same names in the default pool.
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _class(name: str) -> type:
    cls: type = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"tensorflow.{name}"))
    return cls


Example = _class("Example")
Features = _class("Features")
Feature = _class("Feature")
BytesList = _class("BytesList")
FloatList = _class("FloatList")
Int64List = _class("Int64List")
