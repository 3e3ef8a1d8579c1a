# The compiled record codec's C-level entry points, for other compiled twins (ingest.pyx cimports
# them). Each writes the same bytes as its Python-level twin in codec.pyx; the differential tests of
# tests/property/test_ingest_property.py compare whole blocks.

from libc.stdint cimport int64_t, uint32_t

cdef Py_ssize_t encode_msg_c(bytearray out, int64_t base_seq, int64_t base_ts, int64_t seq, int64_t ts,
                             object subject, object hdr, object data) except -1
cdef Py_ssize_t encode_msg_ref_c(bytearray out, int64_t base_seq, int64_t base_ts, int64_t seq, int64_t ts,
                                 object subject, object hdr, int64_t data_len, int64_t file, int64_t offset,
                                 uint32_t crc) except -1
cdef uint32_t crc_of(object data) except? 0xFFFFFFFF
