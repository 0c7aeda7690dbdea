/*
 * fuzz_mesh_signed.c - fuzz_mesh.c with the member records and broadcasts of each input signed
 * by the harness (fuzz_net.h's signers: throwaway ids, and A, B and V themselves), so that the
 * fuzzed records get past the signature checks and reach the member table, the broadcast
 * cache, the duplicate windows and the dials they plan.
 */
#define FN_SIGNED 1
#include "fuzz_mesh.c"
