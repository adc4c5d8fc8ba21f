// Recurrent gate kernels, avx2 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx2.h"
#include "cpu/recurrent/recurrent_impl.h"

namespace minidnn::cpu {

const RecurrentKernels& recurrent_kernels_avx2() {
  static const RecurrentKernels table{
      lstm_forward<Avx2Ops>,
      lstm_forward_units<Avx2Ops>,
      lstm_backward<Avx2Ops>,
      lstm_backward_units<Avx2Ops>,
      gru_forward<Avx2Ops>,
      gru_reset<Avx2Ops>,
      gru_forward_units<Avx2Ops>,
      gru_reset_units<Avx2Ops>,
      gru_backward<Avx2Ops>,
      gru_backward_reset<Avx2Ops>,
      gru_backward_units<Avx2Ops>,
      gru_backward_reset_units<Avx2Ops>,
      rnn_forward<Avx2Ops>,
      rnn_forward_units<Avx2Ops>,
      rnn_backward<Avx2Ops>,
      rnn_backward_units<Avx2Ops>,
  };
  return table;
}

}  // namespace minidnn::cpu
