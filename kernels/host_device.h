// Marks for functions compiled for both the host and the device: under nvcc
// CAPTION_HD is __host__ __device__ and CAPTION_HD_INLINE adds __forceinline__; in host
// compilers they are nothing and `inline`. One definition, so that headers using them
// can be included together in any order.
#pragma once

#if defined(__CUDACC__)
#define CAPTION_HD __host__ __device__
#define CAPTION_HD_INLINE __host__ __device__ __forceinline__
#else
#define CAPTION_HD
#define CAPTION_HD_INLINE inline
#endif
