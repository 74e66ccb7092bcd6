from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
FEATURE_STATUS_NOT_FOUND: FeatureStatus
FEATURE_STATUS_PRESENT: FeatureStatus
FEATURE_STATUS_STALE: FeatureStatus
FEATURE_STATUS_UNSPECIFIED: FeatureStatus
INPUT_SOURCE_MISSING: InputSource
INPUT_SOURCE_NULL: InputSource
INPUT_SOURCE_PRESENT: InputSource
INPUT_SOURCE_REQUEST: InputSource
INPUT_SOURCE_REQUEST_DEFAULT: InputSource
INPUT_SOURCE_STALE: InputSource
INPUT_SOURCE_UNSPECIFIED: InputSource
VALUE_TYPE_BOOL: ValueType
VALUE_TYPE_BYTES: ValueType
VALUE_TYPE_FLOAT32: ValueType
VALUE_TYPE_FLOAT32_VECTOR: ValueType
VALUE_TYPE_FLOAT64: ValueType
VALUE_TYPE_INT64: ValueType
VALUE_TYPE_INT64_LIST: ValueType
VALUE_TYPE_STRING: ValueType
VALUE_TYPE_STRING_LIST: ValueType
VALUE_TYPE_UNSPECIFIED: ValueType

class EntityKey(_message.Message):
    __slots__ = ["int64_value", "string_value"]
    INT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    int64_value: int
    string_value: str
    def __init__(self, int64_value: _Optional[int] = ..., string_value: _Optional[str] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ["event_time_micros", "inputs", "pushed", "sources"]
    EVENT_TIME_MICROS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    PUSHED_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    event_time_micros: _containers.RepeatedScalarFieldContainer[int]
    inputs: _containers.RepeatedScalarFieldContainer[float]
    pushed: _containers.RepeatedScalarFieldContainer[bool]
    sources: _containers.RepeatedScalarFieldContainer[InputSource]
    def __init__(self, inputs: _Optional[_Iterable[float]] = ..., sources: _Optional[_Iterable[_Union[InputSource, str]]] = ..., event_time_micros: _Optional[_Iterable[int]] = ..., pushed: _Optional[_Iterable[bool]] = ...) -> None: ...

class FeatureColumn(_message.Message):
    __slots__ = ["bool_values", "bytes_values", "float32_values", "float32_vector_values", "float64_values", "int64_list_values", "int64_values", "list_lengths", "name", "null_rows", "string_list_values", "string_values", "type", "view"]
    BOOL_VALUES_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUES_FIELD_NUMBER: _ClassVar[int]
    FLOAT32_VALUES_FIELD_NUMBER: _ClassVar[int]
    FLOAT32_VECTOR_VALUES_FIELD_NUMBER: _ClassVar[int]
    FLOAT64_VALUES_FIELD_NUMBER: _ClassVar[int]
    INT64_LIST_VALUES_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUES_FIELD_NUMBER: _ClassVar[int]
    LIST_LENGTHS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NULL_ROWS_FIELD_NUMBER: _ClassVar[int]
    STRING_LIST_VALUES_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    bool_values: _containers.RepeatedScalarFieldContainer[bool]
    bytes_values: _containers.RepeatedScalarFieldContainer[bytes]
    float32_values: _containers.RepeatedScalarFieldContainer[float]
    float32_vector_values: _containers.RepeatedScalarFieldContainer[float]
    float64_values: _containers.RepeatedScalarFieldContainer[float]
    int64_list_values: _containers.RepeatedScalarFieldContainer[int]
    int64_values: _containers.RepeatedScalarFieldContainer[int]
    list_lengths: _containers.RepeatedScalarFieldContainer[int]
    name: str
    null_rows: _containers.RepeatedScalarFieldContainer[int]
    string_list_values: _containers.RepeatedScalarFieldContainer[str]
    string_values: _containers.RepeatedScalarFieldContainer[str]
    type: ValueType
    view: int
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[ValueType, str]] = ..., view: _Optional[int] = ..., null_rows: _Optional[_Iterable[int]] = ..., int64_values: _Optional[_Iterable[int]] = ..., float64_values: _Optional[_Iterable[float]] = ..., float32_values: _Optional[_Iterable[float]] = ..., bool_values: _Optional[_Iterable[bool]] = ..., string_values: _Optional[_Iterable[str]] = ..., bytes_values: _Optional[_Iterable[bytes]] = ..., list_lengths: _Optional[_Iterable[int]] = ..., float32_vector_values: _Optional[_Iterable[float]] = ..., int64_list_values: _Optional[_Iterable[int]] = ..., string_list_values: _Optional[_Iterable[str]] = ...) -> None: ...

class FeatureSchema(_message.Message):
    __slots__ = ["name", "type"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: ValueType
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[ValueType, str]] = ...) -> None: ...

class FloatVector(_message.Message):
    __slots__ = ["values"]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class GetFeaturesRequest(_message.Message):
    __slots__ = ["features", "keys"]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    features: _containers.RepeatedScalarFieldContainer[str]
    keys: _containers.RepeatedCompositeFieldContainer[EntityKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[EntityKey, _Mapping]]] = ..., features: _Optional[_Iterable[str]] = ...) -> None: ...

class GetFeaturesResponse(_message.Message):
    __slots__ = ["columns", "generations", "row_count", "views"]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    GENERATIONS_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[FeatureColumn]
    generations: _containers.RepeatedCompositeFieldContainer[ViewGeneration]
    row_count: int
    views: _containers.RepeatedCompositeFieldContainer[ViewRows]
    def __init__(self, generations: _Optional[_Iterable[_Union[ViewGeneration, _Mapping]]] = ..., row_count: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[FeatureColumn, _Mapping]]] = ..., views: _Optional[_Iterable[_Union[ViewRows, _Mapping]]] = ...) -> None: ...

class InputGeneration(_message.Message):
    __slots__ = ["as_of", "generation", "view"]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    as_of: _timestamp_pb2.Timestamp
    generation: int
    view: str
    def __init__(self, view: _Optional[str] = ..., generation: _Optional[int] = ..., as_of: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Int64List(_message.Message):
    __slots__ = ["values"]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class ListViewsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListViewsResponse(_message.Message):
    __slots__ = ["views"]
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    views: _containers.RepeatedCompositeFieldContainer[ViewInfo]
    def __init__(self, views: _Optional[_Iterable[_Union[ViewInfo, _Mapping]]] = ...) -> None: ...

class RankRequest(_message.Message):
    __slots__ = ["candidate_keys", "context_key", "explain", "ranker", "request_features", "top_k"]
    class RequestFeaturesEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    CANDIDATE_KEYS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    RANKER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FEATURES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    candidate_keys: _containers.RepeatedCompositeFieldContainer[EntityKey]
    context_key: EntityKey
    explain: bool
    ranker: str
    request_features: _containers.MessageMap[str, Value]
    top_k: int
    def __init__(self, ranker: _Optional[str] = ..., context_key: _Optional[_Union[EntityKey, _Mapping]] = ..., candidate_keys: _Optional[_Iterable[_Union[EntityKey, _Mapping]]] = ..., request_features: _Optional[_Mapping[str, Value]] = ..., top_k: _Optional[int] = ..., explain: bool = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ["candidates", "degraded", "degraded_reason", "generations", "input_names", "model_version"]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASON_FIELD_NUMBER: _ClassVar[int]
    GENERATIONS_FIELD_NUMBER: _ClassVar[int]
    INPUT_NAMES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[ScoredCandidate]
    degraded: bool
    degraded_reason: str
    generations: _containers.RepeatedCompositeFieldContainer[ViewGeneration]
    input_names: _containers.RepeatedScalarFieldContainer[str]
    model_version: str
    def __init__(self, candidates: _Optional[_Iterable[_Union[ScoredCandidate, _Mapping]]] = ..., model_version: _Optional[str] = ..., generations: _Optional[_Iterable[_Union[ViewGeneration, _Mapping]]] = ..., degraded: bool = ..., degraded_reason: _Optional[str] = ..., input_names: _Optional[_Iterable[str]] = ...) -> None: ...

class RunSummary(_message.Message):
    __slots__ = ["as_of", "error", "finished_at", "generation", "started_at", "trigger"]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    as_of: _timestamp_pb2.Timestamp
    error: str
    finished_at: _timestamp_pb2.Timestamp
    generation: int
    started_at: _timestamp_pb2.Timestamp
    trigger: str
    def __init__(self, started_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., generation: _Optional[int] = ..., as_of: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ..., trigger: _Optional[str] = ...) -> None: ...

class ScoredCandidate(_message.Message):
    __slots__ = ["explanation", "key", "score"]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    explanation: Explanation
    key: EntityKey
    score: float
    def __init__(self, key: _Optional[_Union[EntityKey, _Mapping]] = ..., score: _Optional[float] = ..., explanation: _Optional[_Union[Explanation, _Mapping]] = ...) -> None: ...

class StreamLag(_message.Message):
    __slots__ = ["behind", "entries", "error", "pending", "source", "stream"]
    BEHIND_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    behind: _duration_pb2.Duration
    entries: int
    error: str
    pending: int
    source: str
    stream: str
    def __init__(self, stream: _Optional[str] = ..., source: _Optional[str] = ..., entries: _Optional[int] = ..., pending: _Optional[int] = ..., behind: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ["values"]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ["bool_value", "bytes_value", "float32_value", "float32_vector_value", "float64_value", "int64_list_value", "int64_value", "string_list_value", "string_value"]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT32_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT32_VECTOR_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT64_LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    bool_value: bool
    bytes_value: bytes
    float32_value: float
    float32_vector_value: FloatVector
    float64_value: float
    int64_list_value: Int64List
    int64_value: int
    string_list_value: StringList
    string_value: str
    def __init__(self, int64_value: _Optional[int] = ..., float64_value: _Optional[float] = ..., float32_value: _Optional[float] = ..., bool_value: bool = ..., string_value: _Optional[str] = ..., bytes_value: _Optional[bytes] = ..., float32_vector_value: _Optional[_Union[FloatVector, _Mapping]] = ..., int64_list_value: _Optional[_Union[Int64List, _Mapping]] = ..., string_list_value: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...

class ViewGeneration(_message.Message):
    __slots__ = ["generation", "model", "view"]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    generation: int
    model: str
    view: str
    def __init__(self, view: _Optional[str] = ..., generation: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class ViewInfo(_message.Message):
    __slots__ = ["age", "as_of", "entity", "features", "generation", "inputs", "kind", "last_failure", "last_success", "max_age", "model", "name", "next_run_at", "published_at", "rows", "schedule", "shards", "streams", "time_zone", "trigger"]
    AGE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_FIELD_NUMBER: _ClassVar[int]
    LAST_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    age: _duration_pb2.Duration
    as_of: _timestamp_pb2.Timestamp
    entity: str
    features: _containers.RepeatedCompositeFieldContainer[FeatureSchema]
    generation: int
    inputs: _containers.RepeatedCompositeFieldContainer[InputGeneration]
    kind: str
    last_failure: RunSummary
    last_success: RunSummary
    max_age: _duration_pb2.Duration
    model: str
    name: str
    next_run_at: _timestamp_pb2.Timestamp
    published_at: _timestamp_pb2.Timestamp
    rows: int
    schedule: str
    shards: int
    streams: _containers.RepeatedCompositeFieldContainer[StreamLag]
    time_zone: str
    trigger: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., entity: _Optional[str] = ..., features: _Optional[_Iterable[_Union[FeatureSchema, _Mapping]]] = ..., generation: _Optional[int] = ..., rows: _Optional[int] = ..., published_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., age: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., model: _Optional[str] = ..., as_of: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[InputGeneration, _Mapping]]] = ..., trigger: _Optional[str] = ..., max_age: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., schedule: _Optional[str] = ..., time_zone: _Optional[str] = ..., shards: _Optional[int] = ..., last_success: _Optional[_Union[RunSummary, _Mapping]] = ..., last_failure: _Optional[_Union[RunSummary, _Mapping]] = ..., next_run_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., streams: _Optional[_Iterable[_Union[StreamLag, _Mapping]]] = ...) -> None: ...

class ViewRows(_message.Message):
    __slots__ = ["event_time_micros", "statuses", "view"]
    EVENT_TIME_MICROS_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    event_time_micros: _containers.RepeatedScalarFieldContainer[int]
    statuses: _containers.RepeatedScalarFieldContainer[FeatureStatus]
    view: str
    def __init__(self, view: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[FeatureStatus, str]]] = ..., event_time_micros: _Optional[_Iterable[int]] = ...) -> None: ...

class FeatureStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ValueType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class InputSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
