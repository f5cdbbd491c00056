// SPDX-License-Identifier: MIT
// Placeholder until the load generator lands.
int main() { return 0; }
