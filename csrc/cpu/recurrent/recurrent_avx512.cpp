// Recurrent gate kernels, avx512 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx512.h"
#include "cpu/recurrent/recurrent_impl.h"

namespace minidnn::cpu {

const RecurrentKernels& recurrent_kernels_avx512() {
  static const RecurrentKernels table{
      lstm_forward<Avx512Ops>,
      lstm_forward_units<Avx512Ops>,
      lstm_backward<Avx512Ops>,
      lstm_backward_units<Avx512Ops>,
      gru_forward<Avx512Ops>,
      gru_reset<Avx512Ops>,
      gru_forward_units<Avx512Ops>,
      gru_reset_units<Avx512Ops>,
      gru_backward<Avx512Ops>,
      gru_backward_reset<Avx512Ops>,
      gru_backward_units<Avx512Ops>,
      gru_backward_reset_units<Avx512Ops>,
      rnn_forward<Avx512Ops>,
      rnn_forward_units<Avx512Ops>,
      rnn_backward<Avx512Ops>,
      rnn_backward_units<Avx512Ops>,
  };
  return table;
}

}  // namespace minidnn::cpu
