// Element types and host-side conversions between fp32 and the 16-bit formats.
//
// The CPU reference computes in fp32. To compare a fp16/bf16 kernel fairly, tests round the inputs
// to the kernel's dtype first (round_to) and compute the reference from the rounded values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace flurry {

enum class DType : uint8_t { F32, F16, BF16, I32, I64, U8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
// Parses "f32"/"float32"/"F32", "f16"/"float16"/"F16", "bf16"/"bfloat16"/"BF16", "i32", "i64", "u8".
DType parse_dtype(const std::string& name);
bool is_float(DType t);

// IEEE-754 binary16 and bfloat16, round to nearest even; NaN stays NaN, overflow becomes inf.
uint16_t float_to_half_bits(float f);
float half_bits_to_float(uint16_t h);
uint16_t float_to_bf16_bits(float f);
float bf16_bits_to_float(uint16_t b);

// Round an fp32 value through the given floating dtype and back (identity for F32).
float round_to(DType t, float f);

// Bulk conversions between fp32 arrays and arrays of dtype `t` (F32, F16 or BF16).
void convert_from_f32(const float* src, void* dst, size_t n, DType t);
void convert_to_f32(const void* src, float* dst, size_t n, DType t);

}  // namespace flurry
