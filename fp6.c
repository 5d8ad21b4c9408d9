#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdint.h>
static void tv(char *p,size_t from,size_t to){ for(size_t o=(from+15)&~15UL; o+9<=to; o+=16){ *(uint64_t*)(p+o)=0x7f0000001000ULL+o; p[o+8]=0x44; } }
enum{N=600000};
static void *a[N];
int main(int argc,char**argv){
  int S=argc>1?atoi(argv[1]):29;
  for(int i=0;i<N;i++){ a[i]=malloc(S); memset(a[i],0,S);}  
  for(int i=N-1;i>=0;i--) free(a[i]);
  char *arr=NULL; size_t cap=0;
  for(int r=0;r<3;r++){ cap=0; for(size_t c=64;c<=(4u<<20);c*=2){ arr=realloc(arr,c); tv(arr,cap,c); cap=c; } free(arr); arr=NULL; }
  for(int i=0;i<N;i++){ a[i]=malloc(66+i%14); }
  puts("ok"); return 0; }
